"""The rankings file behind the web labeler: many raters append to one `ranked` JSONL.

Each saved ranking is one record, exactly as the terminal labeler writes it (prompt, responses,
order best-first, meta = the candidate's meta + `source: "human"`, `rater`, `item`, `contents`),
so `gptlab reward train --data` reads it unchanged and `gptlab rank agree` compares it.

Design decisions:
- **Append, not rewrite**: the terminal labeler rewrites its file from a progress file; the web
  labeler serves several raters at once, so it appends one whole line per ranking (one `write`
  on an `O_APPEND` descriptor, then fsync) under a lock. A failed or short write is truncated
  back, so the file only ever holds whole lines. The file itself is the resume state: a rater's
  done items are the records with their name, no progress file.
- **Validated before written**: the item must exist, the order must be a permutation of its K
  answers, the rater named, and one rater ranks an item once. Errors carry the request field.
- **One file, one writer at a time**: an `flock` spans check and append, and a file changed by
  another process since we read it is read again first, so two servers on one file stay sane.
- The terminal labeler's own files (with a `.progress.json`) are refused: its next save would
  drop whatever we appended.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from gptlab.align.agreement import agreement
from gptlab.align.candidates import Candidates
from gptlab.data.preferences import Ranking, load_rankings
from gptlab.errors import InputError
from gptlab.fileio import fsync_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the in-process lock still holds
    fcntl = None  # type: ignore[assignment]

MAX_RATER = 64  # characters in a rater's name


class RankRequestError(Exception):
    """A bad request: HTTP `status`, a message, and the request `field` it is about."""

    def __init__(self, status: int, message: str, field: str, code: str = "invalid"):
        super().__init__(message)
        self.status, self.message, self.field, self.code = status, message, field, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "field": self.field, "code": self.code}}


def check_rater(name: Any) -> str:
    """The rater's name, stripped; RankRequestError unless it is 1-64 printable characters.

    >>> check_rater("  ada ")
    'ada'
    """
    if not isinstance(name, str) or not name.strip():
        raise RankRequestError(400, "give your name as the rater (a non-empty string)", "rater", "missing")
    name = name.strip()
    if len(name) > MAX_RATER or not name.isprintable():
        raise RankRequestError(400, f"rater must be at most {MAX_RATER} printable characters", "rater")
    return name


def append_line(fd: int, data: bytes) -> None:
    """Append bytes in one write on an O_APPEND descriptor, fsynced; on any failure truncate
    back, so the file only ever holds whole lines."""
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write ({written} of {len(data)} bytes; disk full?)")
        os.fsync(fd)
    except BaseException:
        os.ftruncate(fd, size)
        raise


class RankStore:
    """The candidates (items, by index) and the rankings file several raters append to."""

    def __init__(self, cands: Sequence[Candidates], out: str | Path):
        self.cands, self.out = list(cands), Path(out)
        progress = self.out.with_name(self.out.name + ".progress.json")
        if progress.exists():
            raise InputError(self.out, f"this file is kept by the terminal labeler ({progress.name}), which "
                             "rewrites it and would drop web rankings; give the web labeler another --out")
        for i, c in enumerate(self.cands):
            if len(c.responses) > 26:
                raise InputError(None, f"item {i} has {len(c.responses)} answers; at most 26 can be lettered")
        self.lock = threading.Lock()
        self.by_rater: dict[str, dict[int, Ranking]] = {}
        self.stamp: tuple[int, int] | None = None  # (size, mtime) of the file as last read
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._read()

    # ------------------------------------------------------------------ reading
    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.out.stat()
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    def _read(self) -> None:
        """(Re)read every ranking; InputError when a record is not a ranking of these candidates."""
        self.stamp = self._file_stamp()
        self.by_rater = {}
        if self.stamp is None or self.stamp[0] == 0:
            return
        for no, r in enumerate(load_rankings(self.out), 1):
            rater, item = r.meta.get("rater"), r.meta.get("item")
            if not isinstance(rater, str) or type(item) is not int:
                raise InputError(self.out, f"record {no} has no meta.rater / meta.item: not a labeler's file; "
                                 "give the web labeler another --out")
            if not 0 <= item < len(self.cands) or not self._same(r, self.cands[item]):
                raise InputError(self.out, f"record {no} ranks an item these candidates do not hold at index "
                                 f"{item} (made from another candidates file?); use the same candidates or another --out")
            self.by_rater.setdefault(rater, {}).setdefault(item, r)  # a repeat keeps the first

    @staticmethod
    def _same(r: Ranking, c: Candidates) -> bool:
        return r.prompt == c.prompt and r.responses == list(c.responses)

    def refresh(self) -> None:
        """Read the file again if another process changed it since we did."""
        with self.lock:
            if self._file_stamp() != self.stamp:
                self._read()

    # ------------------------------------------------------------------ queries
    def done(self, rater: str) -> set[int]:
        return set(self.by_rater.get(rater, {}))

    def next_item(self, rater: str, after: int | None = None) -> int | None:
        """The first item this rater has not ranked, after `after` (wrapping round), else None."""
        done, n = self.done(rater), len(self.cands)
        start = 0 if after is None else after + 1
        return next((i % n for i in range(start, start + n) if i % n not in done), None)

    def item(self, i: Any) -> Candidates:
        if type(i) is not int or not 0 <= i < len(self.cands):
            raise RankRequestError(404, f"item {i!r} does not exist (items are 0..{len(self.cands) - 1})",
                                   "item", "not_found")
        return self.cands[i]

    def item_json(self, i: int, rater: str | None = None) -> dict:
        c = self.item(i)
        mine = self.by_rater.get(rater or "", {}).get(i)
        return {"id": i, "prompt": c.prompt, "responses": list(c.responses),
                "ranking": None if mine is None else list(mine.order)}

    def progress(self, rater: str) -> dict:
        return {"rater": rater, "done": len(self.done(rater)), "total": len(self.cands)}

    # ------------------------------------------------------------------ saving
    def ranking(self, i: int, order: list[int], rater: str) -> Ranking:
        """The record the terminal labeler would write for this answer (same meta, same keys)."""
        return self.cands[i].ranked(order, source="human", rater=rater, item=i)

    def save(self, rater: Any, i: Any, order: Any) -> Ranking:
        """Validate, then append one ranking; RankRequestError (nothing written) when it is bad."""
        rater = check_rater(rater)
        k = len(self.item(i).responses)
        if not isinstance(order, list) or any(type(x) is not int for x in order) or sorted(order) != list(range(k)):
            raise RankRequestError(400, f"order must list each of item {i}'s {k} answer indices 0..{k - 1} once, "
                                   f"best first; got {order!r}", "order")
        r = self.ranking(i, order, rater)
        line = json.dumps({"prompt": r.prompt, "responses": r.responses, "ranking": r.order, "meta": r.meta},
                          ensure_ascii=False) + "\n"
        with self.lock:
            created = not self.out.exists()
            fd = os.open(self.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
                if self._file_stamp() != self.stamp:
                    self._read()
                if i in self.by_rater.get(rater, {}):
                    raise RankRequestError(409, f"{rater} has already ranked item {i}", "item", "already_ranked")
                if self.stamp and self.stamp[0] and not self._ends_with_newline():
                    line = "\n" + line  # a hand-edited file may lack its last newline: never glue two records
                append_line(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.out.parent)  # the new file's directory entry must survive a crash too
            self.by_rater.setdefault(rater, {})[i] = r
            self.stamp = self._file_stamp()
        return r

    def _ends_with_newline(self) -> bool:
        with open(self.out, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    # ------------------------------------------------------------------ agreement
    def summary(self, n_boot: int = 1000) -> dict:
        """Per-rater counts, and for every two raters with shared items their agreement
        (`gptlab.align.agreement`: pairwise share, Cohen's kappa, Kendall tau, top-1)."""
        raters = sorted(self.by_rater)
        pairs = []
        for a, b in combinations(raters, 2):
            shared = sorted(set(self.by_rater[a]) & set(self.by_rater[b]))
            if shared:
                ra = [self.by_rater[a][i] for i in shared]
                rb = [self.by_rater[b][i] for i in shared]
                pairs.append({"a": a, "b": b, "items": len(shared), **agreement(ra, rb, n_boot=n_boot)})
        return {"total": len(self.cands), "raters": {r: len(self.by_rater[r]) for r in raters},
                "agreement": pairs, "out": str(self.out)}

"""Preference data for the reward model and DPO: rankings of K responses to one prompt.

A `Ranking` holds a prompt (messages ending with a user turn), K responses and their order
best-first. InstructGPT's trick: a ranking of K answers gives K(K-1)/2 (chosen, rejected)
pairs, all from one labelling effort; a plain preference pair is the K = 2 case.

File formats (JSONL or JSON arrays; auto-detected per record, or forced with `fmt=`):
- `pair`: `{"prompt": ..., "chosen": "...", "rejected": "..."}`. The prompt is a string (one
  user turn) or a message list. TRL's conversational form works too: chosen/rejected as
  `[{"role": "assistant", "content": ...}]`, or as whole conversations sharing the prompt (no
  "prompt" key; the shared messages before the last one are the prompt).
- `ranked`: `{"prompt": ..., "responses": ["...", ...], "ranking": [2, 0, 1]}`, where `ranking`
  lists response indices best-first (here response 2 is best). Ties are not supported.
  `save_rankings` writes this form, with an optional "meta" object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from gptlab.data.conversations import BadRecord, read_records
from gptlab.data.sources import Skips
from gptlab.errors import InputError
from gptlab.fileio import atomic_open
from gptlab.tokenizer.chat import validate_messages

FORMATS = ("auto", "pair", "ranked")


@dataclass
class Ranking:
    """K >= 2 responses to `prompt`, `order` = their indices best-first (a permutation)."""

    prompt: list[dict]
    responses: list[str]
    order: list[int]
    meta: dict = field(
        default_factory=dict
    )  # where it came from (rater, scores, task), kept on save

    def __post_init__(self) -> None:
        k = len(self.responses)
        if k < 2:
            raise ValueError(f"a ranking needs at least 2 responses, got {k}")
        if not all(isinstance(r, str) for r in self.responses):
            raise ValueError("responses must be strings")
        if not all(type(i) is int for i in self.order) or sorted(self.order) != list(range(k)):
            raise ValueError(
                f"order {self.order} must list each of the {k} response indices 0..{k - 1} once "
                "(best first; ties are not supported)"
            )

    def pairs(self) -> list[tuple[int, int]]:
        """All K(K-1)/2 (chosen, rejected) index pairs: each response beats every one ranked below.

        >>> Ranking([{"role": "user", "content": "?"}], ["a", "b", "c"], [2, 0, 1]).pairs()
        [(2, 0), (2, 1), (0, 1)]
        """
        return list(combinations(self.order, 2))

    def conversation(self, i: int) -> list[dict]:
        """The prompt, then response `i` as the assistant turn: what the reward model scores."""
        return self.prompt + [{"role": "assistant", "content": self.responses[i]}]


# ---------------------------------------------------------------------------- record parsing


def _prompt(value: Any) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise BadRecord("empty_prompt", "prompt is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise BadRecord(
            "invalid_prompt",
            f"prompt must be a string or a message list, not {type(value).__name__}",
        )
    try:
        validate_messages(value)
    except ValueError as e:
        raise BadRecord("invalid_prompt", f"prompt: {e}") from None
    if value[-1]["role"] != "user":
        raise BadRecord(
            "invalid_prompt", f"prompt must end with a user message, not {value[-1]['role']}"
        )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _response(value: Any, name: str) -> str:
    """A response string; a one-message assistant list (TRL's conversational form) is unwrapped."""
    if (
        isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and value[0].get("role") == "assistant"
    ):
        value = value[0].get("content")
    if not isinstance(value, str):
        raise BadRecord(
            "not_string",
            f"{name} must be a string (or one assistant message), not {type(value).__name__}",
        )
    return value


def _key(rec: dict, key: str, fmt: str) -> Any:
    if key not in rec:
        raise BadRecord("missing_field", f"{fmt} record has no {key!r} field")
    return rec[key]


def from_pair(rec: dict) -> Ranking:
    chosen, rejected = _key(rec, "chosen", "pair"), _key(rec, "rejected", "pair")
    if "prompt" not in rec and isinstance(chosen, list) and isinstance(rejected, list):
        # implicit prompt: two whole conversations that differ only in the last assistant turn
        if not chosen or chosen[:-1] != rejected[:-1]:
            raise BadRecord(
                "missing_field", "pair record has no 'prompt' and chosen/rejected share no prompt"
            )
        prompt = _prompt(chosen[:-1])
        chosen, rejected = chosen[-1:], rejected[-1:]
    else:
        prompt = _prompt(_key(rec, "prompt", "pair"))
    return Ranking(prompt, [_response(chosen, "chosen"), _response(rejected, "rejected")], [0, 1])


def from_ranked(rec: dict) -> Ranking:
    prompt = _prompt(_key(rec, "prompt", "ranked"))
    responses = _key(rec, "responses", "ranked")
    if not isinstance(responses, list):
        raise BadRecord("not_list", "'responses' must be a list")
    responses = [_response(r, f"response {i}") for i, r in enumerate(responses)]
    order = _key(rec, "ranking", "ranked")
    meta = rec.get("meta") or {}
    if not isinstance(order, list) or not isinstance(meta, dict):
        raise BadRecord(
            "bad_ranking", "'ranking' must be a list of response indices (and 'meta' an object)"
        )
    try:
        return Ranking(prompt, responses, order, meta)
    except ValueError as e:
        raise BadRecord("bad_ranking", str(e)) from None


def to_ranking(rec: Any, fmt: str = "auto") -> tuple[str, Ranking]:
    """(format, Ranking) of one record; BadRecord when it is not valid preference data."""
    if not isinstance(rec, dict):
        raise BadRecord(
            "unknown_format", f"a preference record must be an object, not {type(rec).__name__}"
        )
    kind = fmt
    if fmt == "auto":
        if "chosen" in rec or "rejected" in rec:
            kind = "pair"
        elif "responses" in rec:
            kind = "ranked"
        else:
            raise BadRecord(
                "unknown_format",
                "record is neither prompt/chosen/rejected nor prompt/responses/ranking "
                f"(keys: {', '.join(sorted(rec)) or 'none'})",
            )
    return kind, (from_pair if kind == "pair" else from_ranked)(rec)


# ---------------------------------------------------------------------------- files


def load_preferences(
    path: str | Path, fmt: str = "auto", lenient: bool = False
) -> tuple[list[Ranking], dict]:
    """All rankings in a file, and counts `{"records", "kept", "pairs", "formats", "skipped"}`.

    Strict (default): the first bad record raises `InputError(path, msg, line=N)`; lenient
    skips bad records and counts them by reason.
    """
    if fmt not in FORMATS:
        raise InputError(
            None, f"unknown preference format {fmt!r} (expected one of {', '.join(FORMATS)})"
        )
    skips = Skips(lenient=lenient)
    out: list[Ranking] = []
    formats: dict[str, int] = {}
    records = 0
    for line, rec in read_records(path, skips):
        records += 1
        try:
            kind, ranking = to_ranking(rec, fmt)
        except BadRecord as e:
            skips.bad(e.reason, path, str(e), line)
            continue
        formats[kind] = formats.get(kind, 0) + 1
        out.append(ranking)
    return out, {
        "records": records + skips.counts.get("bad_json", 0),
        "kept": len(out),
        "pairs": sum(len(r.order) * (len(r.order) - 1) // 2 for r in out),
        "formats": formats,
        "skipped": dict(skips.counts),
    }


def save_rankings(path: str | Path, rankings: list[Ranking]) -> None:
    """Write rankings as `ranked` JSONL, atomically (a crash leaves the old file or the new)."""
    with atomic_open(path, "w") as f:
        for r in rankings:
            rec: dict[str, Any] = {"prompt": r.prompt, "responses": r.responses, "ranking": r.order}
            if r.meta:
                rec["meta"] = r.meta
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def load_rankings(path: str | Path) -> list[Ranking]:
    """Read a file written by `save_rankings` (strict: any bad record raises InputError)."""
    return load_preferences(path, fmt="ranked")[0]

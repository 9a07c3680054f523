"""The commit log of `gptlab data stream`: what makes a killed run resume exactly where it stopped.

Layout of the output folder:

    <out>/train_00000.bin, val_00000.bin, ...   chunk c's kept documents (gptlab-shards-v1 arrays)
    <out>/stream/progress.jsonl                 line 1: the settings; then one record per chunk
    <out>/stream/dedup_00000.npz ...            chunk c's kept documents' dedup keys and signatures
    <out>/index.json, report.json               written last, once every chunk is committed

A chunk is committed in this order: its shard files and its dedup file are written atomically
(temp name, fsync, rename), then its record is appended to progress.jsonl and fsynced. The record
is the commit: a kill before it leaves files that the resumed run rewrites with the same bytes;
a kill inside it leaves a torn last line, which `read_log` cuts off. A record holds the input
position after the chunk (documents read, over all sources in order) and the chunk's counts, so
a resumed run skips that many documents, replays the dedup files into a fresh deduplicator, and
carries on as if it had never stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from gptlab.data.dedup import Deduplicator
from gptlab.data.shards import FORMAT, INDEX_FILE, ShardIndex, ShardInfo
from gptlab.errors import InputError
from gptlab.fileio import atomic_open, atomic_write_json, fsync_dir

LOG_FORMAT = "gptlab-stream-v1"
STATE_DIR = "stream"
LOG_FILE = "progress.jsonl"
_OWN_BIN = re.compile(r"^(train|val)_\d{5,}\.bin$")


def state_dir(out: Path) -> Path:
    return out / STATE_DIR


def start_log(out: Path, header: dict) -> None:
    """A fresh run: drop the old index and log, then write the settings line."""
    (out / INDEX_FILE).unlink(missing_ok=True)  # no index = no claim while the shards change
    shutil.rmtree(state_dir(out), ignore_errors=True)
    state_dir(out).mkdir(parents=True)
    with atomic_open(state_dir(out) / LOG_FILE) as f:
        f.write(json.dumps({"format": LOG_FORMAT, **header}, sort_keys=True) + "\n")


def read_log(out: Path, header: dict) -> list[dict] | None:
    """The committed chunk records, or None when there is no log to resume.

    Raises InputError when the log was written with other settings (its output would not be
    the output of these settings). A torn last line (a kill while appending) is cut off.
    """
    path = state_dir(out) / LOG_FILE
    if not path.exists():
        return None
    data = path.read_bytes()
    good = data[: data.rfind(b"\n") + 1]  # complete lines only
    lines = good.decode("utf-8").splitlines()
    if not lines:
        return None
    saved = json.loads(lines[0])
    wanted = json.loads(json.dumps({"format": LOG_FORMAT, **header}, sort_keys=True))
    if saved != wanted:
        changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise InputError(path, f"written with other settings ({', '.join(changed)}); "
                         "run without --resume to start again")  # fmt: skip
    records = []
    for line in lines[1:]:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a torn line that happened to end in a newline
            break
    if len(good) != len(data) or len(records) != len(lines) - 1:
        kept = lines[: len(records) + 1]
        with open(path, "r+b") as f:
            f.truncate(sum(len(line.encode("utf-8")) + 1 for line in kept))
    for c, rec in enumerate(records):
        if rec["chunk"] != c:
            raise InputError(path, f"record {c + 1} is chunk {rec['chunk']}, expected {c}")
    return records


def write_chunk(
    out: Path, chunk: int, train: list[np.ndarray], val: list[np.ndarray],
    keys: np.ndarray, sigs: np.ndarray | None, dtype: str,
) -> dict[str, dict | None]:
    """Write chunk `chunk`'s shard files and dedup file; the shard entries for its record."""
    little = np.dtype(dtype).newbyteorder("<")  # the format is little-endian on any machine
    infos: dict[str, dict | None] = {}
    for split, parts in (("train", train), ("val", val)):
        infos[split] = None
        if not parts:
            continue
        name = f"{split}_{chunk:05d}.bin"
        arr = np.concatenate(parts).astype(little, copy=False)
        with atomic_open(out / name, "wb") as f:
            f.write(arr.tobytes())
        infos[split] = vars(ShardInfo(name, int(arr.size), len(parts)))
    with atomic_open(state_dir(out) / f"dedup_{chunk:05d}.npz", "wb") as f:
        np.savez(f, keys=keys, **({"sigs": sigs} if sigs is not None else {}))
    return infos


def append_record(out: Path, record: dict) -> None:
    """The commit point of a chunk: one line, flushed to disk."""
    with open(state_dir(out) / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def replay(out: Path, records: list[dict], dedup: Deduplicator | None) -> int:
    """Feed the committed chunks' kept documents to a fresh deduplicator; how many there were."""
    n = 0
    for rec in records:
        with np.load(state_dir(out) / f"dedup_{rec['chunk']:05d}.npz") as z:
            keys = z["keys"]
            sigs = z.get("sigs")
        n += len(keys)
        if dedup is not None:
            for i, key in enumerate(keys):
                dedup.remember(key.tobytes(), sigs[i] if sigs is not None else None)
    return n


def write_index(
    out: Path, records: list[dict], dtype: str, vocab_size: int, eot_id: int, tokenizer: str
) -> ShardIndex:
    """index.json listing every chunk's shards in chunk order; then stale shards are removed."""
    splits: dict[str, list[dict]] = {"train": []}
    for split in ("train", "val"):
        for rec in records:
            if (s := rec[split]) is not None:  # the shards format's key order, whatever the log's
                splits.setdefault(split, []).append(vars(ShardInfo(s["file"], s["tokens"], s["documents"])))
    atomic_write_json(out / INDEX_FILE, {
        "format": FORMAT, "dtype": dtype, "vocab_size": vocab_size, "eot_id": eot_id,
        "tokenizer": tokenizer, "splits": splits,
    })  # fmt: skip
    listed = {s["file"] for shards in splits.values() for s in shards}
    for path in out.iterdir():
        if _OWN_BIN.match(path.name) and path.name not in listed:
            path.unlink()  # a longer earlier run's chunks
    fsync_dir(out)
    return ShardIndex.load(out)

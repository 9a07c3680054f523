"""Token shards: documents encoded once, stored as flat little-endian arrays, read by memmap.

Format `gptlab-shards-v1` (the training loader depends on it):

    <out>/index.json  {"format": "gptlab-shards-v1", "dtype": "uint16" | "uint32",
                       "vocab_size": int, "eot_id": int, "tokenizer": "<folder as given>",
                       "splits": {"train": [{"file": "train_0000.bin", "tokens": int,
                                             "documents": int}, ...], "val": [...]}}
    <out>/train_0000.bin ...  raw arrays of that dtype, no header

Every document is preceded by `<|endoftext|>`, so documents are delimited and each one starts
the way generation starts: `[eot] doc1 [eot] doc2 ...`. A document never straddles two shards;
a shard is closed once it holds at least `shard_tokens` tokens (one long document can make it
bigger). uint16 while the vocabulary fits (<= 65536 ids), else uint32.

Writing is crash-safe: the old index is removed first, each shard is written atomically, and
the new index is written last, so a folder with an index always matches it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from gptlab.errors import InputError
from gptlab.fileio import atomic_open, atomic_write_json, read_json

if TYPE_CHECKING:
    from gptlab.tokenizer.protocol import TokenizerLike

FORMAT = "gptlab-shards-v1"
INDEX_FILE = "index.json"
DEFAULT_SHARD_TOKENS = 1 << 24  # 16M tokens: 32 MB as uint16
BATCH_DOCS = 256  # documents per encode_batch call: enough to keep every thread busy
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_.-]+_\d{4,}\.bin$")


def dtype_for(vocab_size: int) -> str:
    """'uint16' when every id fits in 16 bits, else 'uint32'.

    >>> dtype_for(65536), dtype_for(65537)
    ('uint16', 'uint32')
    """
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


@dataclass
class ShardInfo:
    file: str
    tokens: int
    documents: int


@dataclass
class ShardIndex:
    """The parsed `index.json` of a shard folder (`dir` is the folder)."""

    dir: Path
    dtype: str
    vocab_size: int
    eot_id: int
    tokenizer: str
    splits: dict[str, list[ShardInfo]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path) -> ShardIndex:
        """Read and check an index: clear InputError if missing, malformed, or out of sync."""
        folder = Path(folder)
        path = folder / INDEX_FILE
        if not path.exists():
            raise InputError(
                path, "no shard index here; write shards with `gptlab data tokenize`"
            )
        raw = read_json(path)
        try:
            if raw["format"] != FORMAT:
                raise InputError(path, f"format is {raw['format']!r}, expected {FORMAT!r}")
            dtype = raw["dtype"]
            if dtype not in ("uint16", "uint32"):
                raise InputError(path, f"dtype must be uint16 or uint32, not {dtype!r}")
            vocab_size, eot_id = int(raw["vocab_size"]), int(raw["eot_id"])
            if dtype == "uint16" and vocab_size > 1 << 16:
                raise InputError(path, f"vocab_size {vocab_size} does not fit in uint16")
            splits = {
                name: [ShardInfo(str(s["file"]), int(s["tokens"]), int(s["documents"]))
                       for s in shards]
                for name, shards in raw["splits"].items()
            }
            index = cls(folder, dtype, vocab_size, eot_id, str(raw.get("tokenizer", "")), splits)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(path, f"malformed shard index ({type(e).__name__}: {e})") from None
        itemsize = np.dtype(dtype).itemsize
        for shards in index.splits.values():
            for s in shards:
                if not _SHARD_NAME.match(s.file) or s.tokens < 0:
                    raise InputError(path, f"bad shard entry {s}")
                bin_path = folder / s.file
                if not bin_path.exists():
                    raise InputError(bin_path, "shard file listed in index.json is missing")
                size = bin_path.stat().st_size
                if size != s.tokens * itemsize:
                    raise InputError(
                        bin_path, f"size {size} bytes disagrees with index.json "
                        f"({s.tokens} tokens x {itemsize} bytes); re-run `gptlab data tokenize`"
                    )
        return index

    def files(self, split: str) -> list[Path]:
        return [self.dir / s.file for s in self._split(split)]

    def tokens(self, split: str) -> int:
        return sum(s.tokens for s in self._split(split))

    def documents(self, split: str) -> int:
        return sum(s.documents for s in self._split(split))

    def _split(self, split: str) -> list[ShardInfo]:
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise InputError(self.dir / INDEX_FILE, f"no split {split!r} (has: {have})")
        return self.splits[split]


    def arrays(self, split: str) -> list[np.ndarray]:
        """The split's shards as read-only little-endian memmaps (empty shards skipped)."""
        dtype = np.dtype(self.dtype).newbyteorder("<")
        return [
            np.memmap(self.dir / s.file, dtype=dtype, mode="r", shape=(s.tokens,))
            for s in self._split(split) if s.tokens > 0
        ]


def open_split(folder: str | Path, split: str) -> list[np.ndarray]:
    """The split's shards as read-only memmaps (empty shards are skipped)."""
    return ShardIndex.load(folder).arrays(split)


def write_shards(
    docs_by_split: Mapping[str, Iterable[str]],
    tokenizer: TokenizerLike,
    out_dir: str | Path,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    tokenizer_path: str | None = None,
    num_threads: int = 0,
    progress: bool = True,
) -> ShardIndex:
    """Encode each split's documents into `<split>_NNNN.bin` shards and write `index.json` last.

    `tokenizer_path` is recorded in the index (default: the folder the tokenizer was loaded
    from). Files `<split>_NNNN.bin` of an earlier run that the new index does not list are
    deleted after the index is written.
    """
    if shard_tokens < 1:
        raise ValueError("shard_tokens must be positive")
    for split in docs_by_split:
        if not _SPLIT_NAME.match(split):
            raise ValueError(f"split name {split!r} must be letters, digits, '_', '.' or '-'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).unlink(missing_ok=True)  # no index = no claim while shards change
    dtype = dtype_for(tokenizer.vocab_size)
    splits: dict[str, list[ShardInfo]] = {}
    for split, docs in docs_by_split.items():
        splits[split] = _write_split(
            split, docs, tokenizer, out, dtype, shard_tokens, num_threads, progress
        )
    tokenizer_path = tokenizer_path if tokenizer_path is not None else (tokenizer.path or "")
    return _commit_index(out, dtype, tokenizer.vocab_size, tokenizer.eot_id, tokenizer_path, splits)


def write_token_shards(
    out_dir: str | Path,
    splits: Mapping[str, list],
    vocab_size: int,
    eot_id: int,
    tokenizer_path: str = "",
) -> ShardIndex:
    """Write token arrays already in memory (one list of arrays per split, one array per shard).

    For tools and tests that hold tokens rather than text. Arrays are written as they are: each
    document must already start with `eot_id`.

    >>> write_token_shards(tmp, {"train": [[256, 72, 105]], "val": [[256, 33]]}, 257, 256)  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_FILE).unlink(missing_ok=True)
    dtype = dtype_for(vocab_size)
    little = np.dtype(dtype).newbyteorder("<")
    infos: dict[str, list[ShardInfo]] = {}
    for split, arrays in splits.items():
        infos[split] = []
        for i, arr in enumerate(arrays):
            arr = np.asarray(arr)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise ValueError(f"{split} shard {i}: token ids outside [0, {vocab_size})")
            name = f"{split}_{i:04d}.bin"
            with atomic_open(out / name, "wb") as f:
                f.write(arr.astype(little).tobytes())
            infos[split].append(ShardInfo(name, int(arr.size), int((arr == eot_id).sum())))
    return _commit_index(out, dtype, vocab_size, eot_id, tokenizer_path, infos)


def _commit_index(
    out: Path, dtype: str, vocab_size: int, eot_id: int, tokenizer_path: str,
    splits: dict[str, list[ShardInfo]],
) -> ShardIndex:
    """Write index.json last (a complete index means complete shards), then drop stale shards."""
    atomic_write_json(out / INDEX_FILE, {
        "format": FORMAT,
        "dtype": dtype,
        "vocab_size": vocab_size,
        "eot_id": eot_id,
        "tokenizer": tokenizer_path,
        "splits": {name: [vars(s) for s in shards] for name, shards in splits.items()},
    })
    listed = {s.file for shards in splits.values() for s in shards}
    for split in splits:
        own = re.compile(rf"^{re.escape(split)}_\d{{4,}}\.bin$")
        for stale in out.glob(f"{split}_*.bin"):
            if stale.name not in listed and own.match(stale.name):
                stale.unlink()
    return ShardIndex.load(out)


def _batches(docs: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for d in docs:
        batch.append(d)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_split(
    split: str, docs: Iterable[str], tok: TokenizerLike, out: Path, dtype: str,
    shard_tokens: int, num_threads: int, progress: bool,
) -> list[ShardInfo]:
    total = len(docs) if hasattr(docs, "__len__") else None  # type: ignore[arg-type]
    bar = tqdm(total=total, desc=f"tokenize {split}", unit="doc", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    shards: list[ShardInfo] = []
    pending: list[np.ndarray] = []  # encoded documents of the shard being filled
    n_tokens = n_docs = 0

    def flush() -> None:
        nonlocal pending, n_tokens, n_docs
        name = f"{split}_{len(shards):04d}.bin"
        with atomic_open(out / name, "wb") as f:
            for arr in pending:
                f.write(arr.astype(little, copy=False).tobytes())
        shards.append(ShardInfo(name, n_tokens, n_docs))
        pending, n_tokens, n_docs = [], 0, 0

    little = np.dtype(dtype).newbyteorder("<")  # the format is little-endian on any machine
    eot = np.array([tok.eot_id], dtype=dtype)
    for batch in _batches(docs, BATCH_DOCS):
        for ids in tok.encode_batch(batch, num_threads=num_threads):
            arr = np.concatenate([eot, np.asarray(ids, dtype=dtype)])
            pending.append(arr)
            n_tokens += len(arr)
            n_docs += 1
            if n_tokens >= shard_tokens:
                flush()
        bar.update(len(batch))
        bar.set_postfix_str(f"{sum(s.tokens for s in shards) + n_tokens:,} tokens")
    if n_docs:
        flush()
    bar.close()
    return shards



"""`gptlab data tokenize`: encode prepared text (train.jsonl, val.jsonl) into token shards.

    gptlab data tokenize --run tiny
      reads  runs/tiny/data/{train,val}.jsonl   (lines {"text": ..., "source": ..., "id": ...})
             runs/tiny/tokenizer/
      writes runs/tiny/shards/index.json + train_0000.bin ... val_0000.bin

See `gptlab.data.shards` for the format (every document preceded by <|endoftext|>).

`--order related` writes the training documents so that neighbours in a packed row are related
(In-Context Pretraining: BM25 neighbours, greedy paths; `gptlab.data.related`). The val split
keeps its order, so held-out figures compare across orderings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.data.jsonl import JsonlDocs
from gptlab.data.related import related_paths
from gptlab.data.shards import DEFAULT_SHARD_TOKENS, write_shards
from gptlab.errors import InputError
from gptlab.options import RunArgs
from gptlab.tokenizer.loading import load_tokenizer

SPLITS = ("train", "val")


@dataclass
class TokenizeConfig(RunArgs):
    """Encode train.jsonl and val.jsonl into token shards (uint16/uint32 .bin files + index.json);
    every document is preceded by <|endoftext|>."""

    data: Path | None = None  # folder with train.jsonl (required) and val.jsonl (optional) (default: runs/<run>/data)
    tokenizer: str | None = None  # tokenizer folder (default: runs/<run>/tokenizer)
    out: Path | None = None  # output folder for shards and index.json (default: runs/<run>/shards)
    shard_tokens: int = DEFAULT_SHARD_TOKENS  # start a new shard once one holds this many tokens; documents are never split across shards
    threads: int | None = None  # encoding threads (None: all cores)
    quiet: bool = False  # no progress bar
    order: Literal["given", "related"] = "given"  # training documents as prepared (shuffled), or related ones side by side (In-Context Pretraining: BM25 neighbours, greedy paths)
    seed: int = 1337  # with --order related: seeds where the paths start


def order_related(path: Path, seed: int) -> list[str]:
    """The texts of a JSONL file, related ones side by side (see `gptlab.data.related`)."""
    texts = list(JsonlDocs(path))
    t0 = time.perf_counter()
    paths = related_paths(texts, seed)
    print(f"order related: {len(texts):,} documents in {len(paths):,} paths "
          f"({len(texts) / max(1, len(paths)):.1f} per path) in {time.perf_counter() - t0:.1f}s")
    return [texts[i] for p in paths for i in p]


def run(cfg: TokenizeConfig) -> int:
    if cfg.shard_tokens < 1:
        raise InputError(None, f"--shard-tokens must be positive, got {cfg.shard_tokens}")
    data = cfg.data if cfg.data is not None else run_dir(cfg.run, "data")
    # a str, as given: index.json records the tokenizer folder the way the user wrote it
    tok_dir = cfg.tokenizer if cfg.tokenizer is not None else str(run_dir(cfg.run, "tokenizer"))
    out = cfg.out if cfg.out is not None else run_dir(cfg.run, "shards")

    tok = load_tokenizer(tok_dir)
    docs = {}
    for split in SPLITS:
        path = data / f"{split}.jsonl"
        if path.exists():
            related = split == "train" and cfg.order == "related"
            docs[split] = order_related(path, cfg.seed) if related else JsonlDocs(path)
        elif split == "train":
            raise InputError(path, "file not found; write it with `gptlab data prepare`")
        else:
            print(f"note: {path} not found: writing no val split")

    t0 = time.perf_counter()
    index = write_shards(docs, tok, out, shard_tokens=cfg.shard_tokens, tokenizer_path=tok_dir,
                         num_threads=cfg.threads or 0, progress=not cfg.quiet)
    seconds = time.perf_counter() - t0
    total = 0
    for split in index.splits:
        n, d, k = index.tokens(split), index.documents(split), len(index.splits[split])
        total += n
        print(f"{split:>5}: {n:,} tokens in {d:,} documents, {k} shard(s) ({index.dtype})")
    print(f"wrote {out}/index.json in {seconds:.1f}s ({total / max(seconds, 1e-9):,.0f} tokens/s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(TokenizeConfig, argv, "gptlab data tokenize"))


if __name__ == "__main__":
    raise SystemExit(main())

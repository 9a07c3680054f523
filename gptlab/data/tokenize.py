"""`gptlab data tokenize`: encode prepared text (train.jsonl, val.jsonl) into token shards.

    gptlab data tokenize --run tiny
      reads  runs/tiny/data/{train,val}.jsonl   (lines {"text": ..., "source": ..., "id": ...})
             runs/tiny/tokenizer/
      writes runs/tiny/shards/index.json + train_0000.bin ... val_0000.bin

See `gptlab.data.shards` for the format (every document preceded by <|endoftext|>).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

from gptlab.errors import InputError

SPLITS = ("train", "val")


def iter_jsonl_texts(path: str | Path, field: str = "text") -> Iterator[str]:
    """The `field` string of each line of a JSONL file; blank lines are skipped.

    Raises InputError naming the file and line for a line that is not a JSON object with a
    string `field`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    with open(path, "rb") as f:  # bytes, so a bad byte is reported on its own line
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(path, "line is not valid UTF-8", line=lineno) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"line is not valid JSON ({e.msg})", line=lineno) from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise InputError(path, f'expected an object with a string "{field}"', line=lineno)
            yield record[field]


class _JsonlDocs:
    """Re-iterable documents of a JSONL file, with a length for the progress bar."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            self._n = sum(1 for line in f if line.strip())

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[str]:
        return iter_jsonl_texts(self.path)


def build_parser() -> argparse.ArgumentParser:
    from gptlab.data.shards import DEFAULT_SHARD_TOKENS

    p = argparse.ArgumentParser(
        prog="gptlab data tokenize",
        description="Encode train.jsonl and val.jsonl into token shards (uint16/uint32 .bin files "
        "+ index.json); every document is preceded by <|endoftext|>.",
    )
    p.add_argument("--run", default="tiny", help="run name: fills the default paths below "
                   "(runs/<run>/...) (default: %(default)s)")
    p.add_argument("--data", help="folder with train.jsonl (required) and val.jsonl (optional) "
                   "(default: runs/<run>/data)")
    p.add_argument("--tokenizer", help="tokenizer folder (default: runs/<run>/tokenizer)")
    p.add_argument("--out", help="output folder for shards and index.json "
                   "(default: runs/<run>/shards)")
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS,
                   help="start a new shard once one holds this many tokens; documents are never "
                   "split across shards (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0,
                   help="encoding threads; 0 = all cores (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from gptlab.common import run_dir
    from gptlab.data.shards import write_shards
    from gptlab.tokenizer.bpe import Tokenizer

    args = build_parser().parse_args(argv)
    if args.shard_tokens < 1:
        raise InputError(None, f"--shard-tokens must be positive, got {args.shard_tokens}")
    data = Path(args.data) if args.data else run_dir(args.run, "data")
    tok_dir = args.tokenizer or str(run_dir(args.run, "tokenizer"))
    out = Path(args.out) if args.out else run_dir(args.run, "shards")

    tok = Tokenizer.load(tok_dir)
    docs = {}
    for split in SPLITS:
        path = data / f"{split}.jsonl"
        if path.exists():
            docs[split] = _JsonlDocs(path)
        elif split == "train":
            raise InputError(path, "file not found; write it with `gptlab data prepare`")
        else:
            print(f"note: {path} not found: writing no val split")

    t0 = time.perf_counter()
    index = write_shards(docs, tok, out, shard_tokens=args.shard_tokens, tokenizer_path=tok_dir,
                         num_threads=args.threads, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    total = 0
    for split in index.splits:
        n, d, k = index.tokens(split), index.documents(split), len(index.splits[split])
        total += n
        print(f"{split:>5}: {n:,} tokens in {d:,} documents, {k} shard(s) ({index.dtype})")
    print(f"wrote {out}/index.json in {seconds:.1f}s ({total / max(seconds, 1e-9):,.0f} tokens/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`gptlab tokenizer train`: learn a byte-level BPE from text and save the tokenizer folder.

    gptlab tokenizer train --run tiny          # runs/tiny/data/train.jsonl -> runs/tiny/tokenizer/
    gptlab tokenizer train --input notes.txt more/ --vocab-size 1024 --out /tmp/tok
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.data.jsonl import iter_jsonl_texts
from gptlab.errors import InputError
from gptlab.options import RunArgs
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.special import SPECIAL_TOKENS
from gptlab.tokenizer.vocab import PATTERNS


@dataclass
class TokenizerTrainConfig(RunArgs):
    """Learn a byte-level BPE (rustbpe) from text and save it: tokenizer.tiktoken,
    gptlab_tokenizer.json, and the Hugging Face files (tokenizer.json, ...)."""

    data: Path | None = None  # folder with train.jsonl (lines with a "text" field) and optionally val.jsonl, used to report bytes/token (default: runs/<run>/data)
    input: tuple[str, ...] = ()  # train on these instead of train.jsonl: text files (one document each), .jsonl files, or folders of .txt/.md files
    vocab_size: int = 4096  # total vocabulary including the 256 bytes and the special tokens
    max_chars: int | None = None  # train on at most this many characters (None: all)
    pattern: Literal["gpt4", "nanochat"] = "gpt4"  # split regex: gpt4 groups digits by up to 3, nanochat by up to 2
    out: Path | None = None  # tokenizer folder to write (default: runs/<run>/tokenizer)


def read_text_file(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 (byte {e.start})") from None


def iter_inputs(paths: Iterable[str]) -> Iterator[str]:
    """Documents from --input: a .jsonl file gives its "text" fields, any other file is one
    document, a folder gives each .txt/.md file under it (sorted)."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.suffix in (".txt", ".md") and p.is_file()
            )
            if not files:
                raise InputError(path, "folder has no .txt or .md files")
            for f in files:
                yield read_text_file(f)
        elif not path.exists():
            raise InputError(path, "file not found")
        elif path.suffix == ".jsonl":
            yield from iter_jsonl_texts(path)
        else:
            yield read_text_file(path)


def limit_chars(docs: Iterable[str], max_chars: int | None) -> Iterator[str]:
    """Stop after `max_chars` characters in all (the last document is cut)."""
    left = max_chars
    for d in docs:
        if left is None:
            yield d
            continue
        if left <= 0:
            return
        yield d[:left]
        left -= len(d)


def val_bytes_per_token(tok: Tokenizer, val_path: Path) -> tuple[int, int]:
    """(bytes, tokens) of the documents of a JSONL file."""
    docs = list(iter_jsonl_texts(val_path))
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(docs))
    return n_bytes, n_tokens


def _training_text(cfg: TokenizerTrainConfig, data: Path) -> tuple[Iterator[str], str]:
    """The documents to learn from and a name for them (--input, else <data>/train.jsonl)."""
    if cfg.input:
        return iter_inputs(cfg.input), " ".join(cfg.input)
    train_path = data / "train.jsonl"
    if not train_path.exists():
        raise InputError(train_path, "file not found; run `gptlab data prepare` first, "
                         "or pass --data DIR or --input FILE")
    return iter_jsonl_texts(train_path), str(train_path)


def run(cfg: TokenizerTrainConfig) -> int:
    if cfg.max_chars is not None and cfg.max_chars < 1:
        raise InputError(None, f"--max-chars must be positive, got {cfg.max_chars}")
    minimum = 256 + len(SPECIAL_TOKENS)
    if cfg.vocab_size < minimum:
        raise InputError(None, f"--vocab-size {cfg.vocab_size} is too small: it must be at least "
                         f"{minimum} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
    data = cfg.data if cfg.data is not None else run_dir(cfg.run, "data")
    out = cfg.out if cfg.out is not None else run_dir(cfg.run, "tokenizer")
    docs, source = _training_text(cfg, data)
    print(f"training a {cfg.vocab_size}-token BPE on {source}")
    tok = Tokenizer.train(limit_chars(docs, cfg.max_chars), cfg.vocab_size,
                          pattern=PATTERNS[cfg.pattern])
    st = tok.stats
    if st["characters"] == 0:
        raise InputError(source, "no training text")
    print(f"trained in {st['train_seconds']:.2f}s on {st['documents']:,} documents, "
          f"{st['characters']:,} characters: vocab size {tok.vocab_size} "
          f"({st['merges']} merges + 256 bytes + {len(tok.special_ids)} special tokens)")
    if st["merges"] < st["requested_merges"]:
        print(f"warning: the text ran out of pairs after {st['merges']} of "
              f"{st['requested_merges']} merges: vocab size is {tok.vocab_size}, "
              f"not {cfg.vocab_size}", file=sys.stderr)
    val_path = data / "val.jsonl"
    if val_path.exists():
        n_bytes, n_tokens = val_bytes_per_token(tok, val_path)
        if n_tokens:
            tok.stats["val_bytes_per_token"] = round(n_bytes / n_tokens, 4)
            print(f"val: {n_bytes:,} bytes -> {n_tokens:,} tokens = "
                  f"{n_bytes / n_tokens:.2f} bytes/token ({val_path})")
    written = tok.save(out)
    if not (out / "tokenizer.json").exists():
        print("note: the `tokenizers` library is not installed: no Hugging Face files written")
    print(f"saved {out}/ ({', '.join(p.name for p in written)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(TokenizerTrainConfig, argv, "gptlab tokenizer train"))


if __name__ == "__main__":
    raise SystemExit(main())

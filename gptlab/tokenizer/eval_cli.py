"""`gptlab tokenizer eval`: bytes per token on several kinds of text, printed and saved.

    gptlab tokenizer eval --run tiny           # table + runs/tiny/tokenizer/eval.json
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.data.jsonl import iter_jsonl_texts
from gptlab.errors import InputError
from gptlab.fileio import atomic_write_json
from gptlab.options import RunArgs
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples, evaluate, table, to_json


@dataclass
class TokenizerEvalConfig(RunArgs):
    """Bytes per token on gptlab's held-out samples (English prose, Python, numbers, Chinese,
    Korean, Arabic, emoji) and on <data>/val.jsonl when present; prints a table and writes
    eval.json into the tokenizer folder."""

    tokenizer: str | None = None  # tokenizer folder (overrides --run)
    data: Path | None = None  # folder whose val.jsonl is evaluated too, if it exists (default: runs/<run>/data)
    samples: Path | None = None  # folder of <kind>.txt files to use instead of the built-in samples


def _samples(cfg: TokenizerEvalConfig) -> dict:
    """{kind: text}: the built-in samples, or those of --samples."""
    if cfg.samples is not None:
        if not cfg.samples.is_dir():
            raise InputError(cfg.samples, "not a folder")
        samples: dict = builtin_samples(cfg.samples)
        if not samples:
            raise InputError(cfg.samples, "no .txt files in this folder")
    else:
        samples = builtin_samples()
    return samples


def run(cfg: TokenizerEvalConfig) -> int:
    tok_dir = cfg.tokenizer or str(run_dir(cfg.run, "tokenizer"))  # eval.json keeps it as given
    tok = Tokenizer.load(tok_dir)
    samples = _samples(cfg)
    data = cfg.data if cfg.data is not None else run_dir(cfg.run, "data")
    val_path = data / "val.jsonl"
    if val_path.exists():
        samples["val.jsonl"] = list(iter_jsonl_texts(val_path))
    rows = evaluate(tok, samples)
    print(f"tokenizer {tok_dir} (vocab size {tok.vocab_size})")
    print(table(rows))
    poor = [r.kind for r in rows if r.tokens and r.bytes_per_token < 1.5]
    if poor:
        print(f"note: {', '.join(poor)}: under 1.5 bytes/token, nearly one token per byte. This "
              "vocabulary learned almost no merges for such text; a tokenizer only compresses "
              "what it was trained on.")
    report = {
        "tokenizer": tok_dir,
        "vocab_size": tok.vocab_size,
        "val": str(val_path) if val_path.exists() else None,
        "rows": to_json(rows),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(Path(tok_dir) / "eval.json", report)
    print(f"wrote {Path(tok_dir) / 'eval.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(TokenizerEvalConfig, argv, "gptlab tokenizer eval"))


if __name__ == "__main__":
    raise SystemExit(main())

"""Bytes per token on held-out text of several kinds: how well a vocabulary fits each.

More bytes per token means shorter sequences, so more text per context window and per step of
compute. A byte-level BPE never fails on unseen text, but it can degrade to about one token per
byte: a tokenizer trained on English Shakespeare spends one token on almost every byte of
Chinese (3 bytes a character), as the lecture slides show for LLaMA on Chinese.

The samples in `gptlab/tokenizer/samples/` were written for gptlab (none are from Shakespeare):
English prose, Python code, numbers and arithmetic, Chinese, Korean, Arabic and emoji.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gptlab.tokenizer.bpe import Tokenizer

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


@dataclass
class Row:
    kind: str
    bytes: int
    tokens: int

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens if self.tokens else 0.0


def builtin_samples(folder: Path = SAMPLES_DIR) -> dict[str, str]:
    """{kind: text} for every `<kind>.txt` shipped with gptlab, in name order."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


def evaluate(tok: Tokenizer, samples: dict[str, Iterable[str] | str]) -> list[Row]:
    """One Row per kind; a kind's value is one text or an iterable of documents."""
    rows = []
    for kind, texts in samples.items():
        docs = [texts] if isinstance(texts, str) else list(texts)
        n_bytes = sum(len(d.encode("utf-8")) for d in docs)
        n_tokens = sum(len(ids) for ids in tok.encode_batch(docs))
        rows.append(Row(kind, n_bytes, n_tokens))
    return rows


def table(rows: list[Row]) -> str:
    """A fixed-width table with a bar, so the Chinese-near-1 point is visible at a glance."""
    width = max([len(r.kind) for r in rows] + [4])
    lines = [f"{'kind':<{width}}  {'bytes':>9}  {'tokens':>8}  {'bytes/token':>11}"]
    for r in rows:
        bar = "#" * round(r.bytes_per_token * 4)
        lines.append(
            f"{r.kind:<{width}}  {r.bytes:>9,}  {r.tokens:>8,}  {r.bytes_per_token:>11.2f}  {bar}"
        )
    return "\n".join(lines)


def to_json(rows: list[Row]) -> list[dict]:
    return [asdict(r) | {"bytes_per_token": round(r.bytes_per_token, 4)} for r in rows]

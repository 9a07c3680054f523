"""The data mixture: how much of each source the training set holds, as in LLaMA's table 1.

Each source is repeated `epochs` times (2.0: every document twice; 0.5: a deterministic half).
Or it gets a `weight`: its share of a target size, `--target-chars N`, which becomes
`epochs = weight / sum(weights) * N / source_chars` (sources with fixed epochs take their
part of N first). A weight with no target shares out the input's own total size.

The train/validation split is made per document BEFORE any repetition, so validation never
holds a copy of a training document. Which documents go to validation depends only on their
text and the seed (a hash), not on their order, so adding a source does not reshuffle another
source's split.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass

from gptlab.data.document import Document
from gptlab.errors import InputError


def doc_hash(doc: Document, seed: int, salt: str = "") -> int:
    """A stable pseudo-random number for a document: the same text and seed, the same number."""
    h = hashlib.blake2b(f"{seed}\0{salt}\0{doc.source}\0{doc.text}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def _lowest(docs: list[Document], k: int, seed: int, salt: str) -> set[int]:
    """Indices of the k documents with the lowest hashes: a deterministic sample of exactly k."""
    order = sorted(range(len(docs)), key=lambda i: (doc_hash(docs[i], seed, salt), i))
    return set(order[:k])


def split_train_val(
    docs: list[Document], val_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """(train, val), both in input order. A source of >= 2 documents gives val at least one.

    >>> docs = [Document(f"doc {i}", "s", str(i)) for i in range(10)]
    >>> train, val = split_train_val(docs, 0.2, seed=0)
    >>> len(train), len(val), set(d.id for d in train) & set(d.id for d in val)
    (8, 2, set())
    """
    n = len(docs)
    k = 0 if val_fraction <= 0 or n < 2 else min(n - 1, max(1, round(val_fraction * n)))
    chosen = _lowest(docs, k, seed, "val")
    train = [d for i, d in enumerate(docs) if i not in chosen]
    val = [d for i, d in enumerate(docs) if i in chosen]
    return train, val


def repeat(docs: list[Document], epochs: float, seed: int) -> list[Document]:
    """Every document int(epochs) times, plus a deterministic sample once more.

    The sample holds the fractional part of the characters (not of the documents), so a
    source's share of the mixture comes out as asked even when its documents vary in length.

    >>> docs = [Document(f"doc {i}", "s", str(i)) for i in range(4)]
    >>> len(repeat(docs, 2.0, 0)), len(repeat(docs, 0.5, 0)), len(repeat(docs, 1.25, 0))
    (8, 2, 5)
    """
    whole, frac = int(epochs), epochs - int(epochs)
    budget = frac * sum(len(d.text) for d in docs)
    extra, used = set(), 0
    for i in sorted(range(len(docs)), key=lambda i: (doc_hash(docs[i], seed, "epoch"), i)):
        n = len(docs[i].text)
        if used + n / 2 < budget:  # take a document when more than half of it fits
            extra.add(i)
            used += n
    return docs * whole + [d for i, d in enumerate(docs) if i in extra]


@dataclass
class MixRow:
    """One line of the mixture table (train side; val is never repeated)."""

    source: str
    docs: int  # unique training documents
    chars: int
    epochs: float
    out_docs: int  # after repetition
    out_chars: int
    share: float  # of all training characters written
    val_docs: int
    val_chars: int

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_epochs(
    sources: list[tuple[str, int, float | None, float | None]], target_chars: int | None
) -> dict[str, float]:
    """(name, train_chars, weight, epochs) per source -> epochs per source.

    >>> resolve_epochs([("a", 100, None, 2.0), ("b", 50, None, None)], None)
    {'a': 2.0, 'b': 1.0}
    >>> resolve_epochs([("a", 100, 3.0, None), ("b", 50, 1.0, None)], 400)
    {'a': 3.0, 'b': 2.0}
    """
    weighting = target_chars is not None or any(w is not None for _, _, w, _ in sources)
    out = {name: e for name, _, _, e in sources if e is not None}
    if not weighting:
        return {name: out.get(name, 1.0) for name, *_ in sources}
    weighted = [
        (name, chars, 1.0 if w is None else w) for name, chars, w, e in sources if e is None
    ]
    if target_chars is None:  # weights alone: keep the input's total size, share it by weight
        target_chars = sum(chars for _, chars, _, _ in sources)
    left = target_chars - sum(chars * out[name] for name, chars, _, _ in sources if name in out)
    if weighted and left <= 0:
        raise InputError(
            None, f"--target-chars {target_chars:,} is used up by the sources with fixed epochs"
        )
    total_w = sum(w for _, _, w in weighted)
    for name, chars, w in weighted:
        out[name] = (w / total_w) * left / chars if chars else 0.0
    return {name: out[name] for name, *_ in sources}


def mix(
    groups: dict[str, list[Document]],
    weights: dict[str, tuple[float | None, float | None]],
    val_fraction: float = 0.05,
    seed: int = 1337,
    target_chars: int | None = None,
) -> tuple[list[Document], list[Document], list[MixRow]]:
    """Split each source, repeat its train part by its epochs, shuffle: (train, val, table).

    `groups`: source name -> its kept documents; `weights`: name -> (weight, epochs).
    """
    splits = {name: split_train_val(docs, val_fraction, seed) for name, docs in groups.items()}
    chars = {name: sum(len(d.text) for d in tr) for name, (tr, _) in splits.items()}
    epochs = resolve_epochs(
        [(n, chars[n], *weights.get(n, (None, None))) for n in groups], target_chars
    )
    train: list[Document] = []
    val: list[Document] = []
    rows = []
    for name, (tr, va) in splits.items():
        out = repeat(tr, epochs[name], seed)
        train += out
        val += va
        rows.append(
            MixRow(
                name,
                len(tr),
                chars[name],
                round(epochs[name], 6),
                len(out),
                sum(len(d.text) for d in out),
                0.0,
                len(va),
                sum(len(d.text) for d in va),
            )
        )
    total = sum(r.out_chars for r in rows)
    for r in rows:
        r.share = round(r.out_chars / total, 6) if total else 0.0
    random.Random(seed).shuffle(train)
    return train, val, rows

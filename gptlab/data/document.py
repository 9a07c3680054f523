"""The unit every text reader yields: `Document(text, source, id)`.

Its own module, below both the generic readers (`sources`) and the corpus parsers (`plays`,
`chats`), so `sources` can read the embedded corpora without the parsers importing it back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Document:
    text: str
    source: str  # the source's name, e.g. "shakespeare"
    id: str  # stable within the source: "macbeth/1.1", "notes/a.txt", "data.jsonl:12"

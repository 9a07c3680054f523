"""What a byte-level BPE vocabulary is, as data: mergeable ranks, a split pattern, special ids.

The bottom of the tokenizer package. `bpe.Tokenizer` has these fields; the writers of other
formats (`hf_export`) need only them, so they depend on this module and not on `bpe`, and
`Tokenizer.save` can call them without an import cycle.

Split patterns: GPT-4's (`\\p{N}{1,3}`: numbers in groups of up to three digits), which is also
rustbpe's default. nanochat uses `\\p{N}{1,2}` to spend fewer of a small vocab's slots on
numbers (`gptlab tokenizer train --pattern nanochat`).
"""

from __future__ import annotations

from typing import Protocol

GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
NANOCHAT_PATTERN = GPT4_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}{1,2}")
PATTERNS: dict[str, str] = {"gpt4": GPT4_PATTERN, "nanochat": NANOCHAT_PATTERN}


class Vocab(Protocol):
    """The fields of a trained tokenizer that another file format is written from."""

    mergeable_ranks: dict[bytes, int]  # token bytes -> id; ids 0..255 are the single bytes
    pattern: str  # the split regex applied before merging
    special_ids: dict[str, int]  # special token text -> id, after the ranks

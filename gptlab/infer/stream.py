"""Turn a stream of token ids into a stream of text, safely.

A byte-level BPE token may end in the middle of a UTF-8 character ("é" can be split over two
tokens), so decoding token by token would print replacement characters. `TextStream` keeps the
bytes of an incomplete character until the next token completes it.

    s = TextStream(tok); s.push(id_of_first_half_of_é) -> "" ; s.push(id_of_second_half) -> "é"
"""

from __future__ import annotations

import codecs
from typing import Protocol


class _Bytes(Protocol):
    def decode_bytes(self, ids: list[int]) -> bytes: ...


class TextStream:
    def __init__(self, tok: _Bytes, skip_ids: set[int] | frozenset[int] = frozenset()):
        self.tok = tok
        self.skip_ids = set(skip_ids)  # e.g. the end-of-turn id: not shown as text
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Text completed by this token (maybe "" while a character is still incomplete)."""
        if token_id in self.skip_ids:
            return ""
        return self._decoder.decode(self.tok.decode_bytes([token_id]))

    def flush(self) -> str:
        """Whatever is left at the end (an incomplete character becomes U+FFFD)."""
        return self._decoder.decode(b"", final=True)

"""Render text with its token boundaries visible: alternating background colours on a terminal
(like the tokenizer page in the lecture slides), a visible separator otherwise, ids beneath.

A token that is not valid UTF-8 on its own (one piece of a multi-byte character, as a small
English-trained vocabulary makes of Chinese) is shown as its bytes, `\\xe4\\xb8`, the way the
slides show LLaMA's `0xE5 0x93 0xB2` for a character it has no token for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gptlab.tokenizer.bpe import Tokenizer

# Background colours (256-colour ANSI) cycled token by token, with black text for contrast.
BACKGROUNDS = (153, 223, 157, 217, 189, 229)
RESET = "\x1b[0m"
SEPARATOR = "\u2502"  # '│': rarely in real text, unlike '|'


@dataclass
class Shown:
    text: str  # the rendered text
    ids: list[int]
    n_bytes: int

    @property
    def summary(self) -> str:
        n = len(self.ids)
        ratio = f"{self.n_bytes / n:.2f}" if n else "-"
        return f"{n} tokens, {self.n_bytes} bytes, {ratio} bytes/token"


def token_label(raw: bytes) -> str:
    """Printable form of one token's bytes: text if it is valid UTF-8, else escaped bytes.

    >>> token_label(b" the"), token_label("中".encode()[:2]), token_label(b"a\\nb")
    (' the', '\\\\xe4\\\\xb8', 'a↵\\nb')
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{b:02x}" for b in raw)
    # Keep line structure but make newlines and tabs visible inside a token.
    return text.replace("\r", "\u240d").replace("\t", "\u2192").replace("\n", "\u21b5\n")


def render(tok: Tokenizer, text: str, color: bool = True) -> Shown:
    """Encode `text` (special tokens allowed) and render each token's boundaries."""
    ids = tok.encode(text, allowed_special="all")
    parts = []
    for k, i in enumerate(ids):
        label = token_label(tok.token_bytes(i))
        if color:
            bg = BACKGROUNDS[k % len(BACKGROUNDS)]
            # Colour each line of a multi-line token separately so the colour does not bleed
            # to the right edge of the terminal.
            label = "\n".join(
                f"\x1b[30;48;5;{bg}m{line}{RESET}" if line else "" for line in label.split("\n")
            )
        parts.append(label)
    joined = "".join(parts) if color else SEPARATOR.join(parts)
    return Shown(text=joined, ids=ids, n_bytes=len(text.encode("utf-8")))

"""Quality filters: cheap heuristics that drop documents unlikely to be useful prose.

Each filter is a small named function of the text; `Filters` holds their thresholds (None turns
one off) and `Filters.check` names the first one a document fails, so the report can count
drops per filter. The heuristics follow Gopher (Rae et al. 2021, appendix A), with one change:
duplicated lines are measured by characters, not by count, because a play's repeated speaker
tags ("ROMEO:") are short, legitimate duplicates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import InputError

# Punctuation that ordinary prose uses freely; anything else non-alphanumeric is a "symbol".
PROSE_PUNCTUATION = frozenset(".,;:!?'\"-()\u2018\u2019\u201c\u201d\u2013\u2014\u2026")


def char_count(text: str) -> int:
    """Characters, ignoring leading and trailing whitespace.

    >>> char_count("  To be, or not to be  ")
    19
    """
    return len(text.strip())


def symbol_ratio(text: str) -> float:
    """Symbols (not letters, digits, spaces or prose punctuation) per letter.

    >>> symbol_ratio("To be, or not to be: that is the question.")
    0.0
    >>> round(symbol_ratio("x = {'a': [1, 2]} # see <b>"), 2)
    1.33
    """
    letters = sum(ch.isalpha() for ch in text)
    symbols = sum(1 for ch in text if not (ch.isalnum() or ch.isspace() or ch in PROSE_PUNCTUATION))
    return symbols / max(1, letters)


def duplicate_line_fraction(text: str) -> float:
    """Share of the characters (of non-blank lines) that sit in repeats of an earlier line.

    >>> duplicate_line_fraction("spam\\nspam\\nspam\\nspam\\ngood")
    0.6
    >>> duplicate_line_fraction("ROMEO:\\nBut soft!\\n\\nJULIET:\\nAy me!\\n\\nROMEO:\\nShe speaks.")
    0.133333
    """
    seen: set[str] = set()
    total = dup = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        total += len(line)
        if line in seen:
            dup += len(line)
        seen.add(line)
    return round(dup / total, 6) if total else 0.0


def load_blocklist(path: str | Path) -> list[str]:
    """A words file: one word or phrase a line, `#` starts a comment line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "blocklist file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(path, "blocklist is not UTF-8") from None
    words = [w.strip() for w in lines if w.strip() and not w.strip().startswith("#")]
    if not words:
        raise InputError(path, "blocklist holds no words")
    return words


def compile_blocklist(words: list[str]) -> re.Pattern:
    # Longest first, so "bad word" wins over "bad"; lookarounds, because \b fails next to symbols.
    alts = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def blocklist_hits(text: str, pattern: re.Pattern) -> int:
    """Whole-word, case-insensitive matches of the blocklist.

    >>> blocklist_hits("Spam, spam and SPAMMER", compile_blocklist(["spam"]))
    2
    """
    return len(pattern.findall(text))


@dataclass
class Filters:
    """Thresholds; None switches a filter off. Defaults keep all of Shakespeare."""

    min_chars: int | None = 50
    max_chars: int | None = 1_000_000
    max_symbol_ratio: float | None = 0.1
    max_duplicate_line_fraction: float | None = 0.3
    blocklist: list[str] | None = None  # words or phrases; see load_blocklist
    _pattern: re.Pattern | None = field(default=None, init=False, repr=False)

    NAMES = ("too_short", "too_long", "symbols", "duplicate_lines", "blocklist")

    def __post_init__(self) -> None:
        self._pattern = compile_blocklist(self.blocklist) if self.blocklist else None

    def check(self, text: str) -> str | None:
        """The name of the first filter that drops `text`, or None to keep it.

        >>> Filters(min_chars=5).check("hi")
        'too_short'
        >>> Filters(min_chars=5).check("hello there") is None
        True
        """
        n = char_count(text)
        if self.min_chars is not None and n < self.min_chars:
            return "too_short"
        if self.max_chars is not None and n > self.max_chars:
            return "too_long"
        if self.max_symbol_ratio is not None and symbol_ratio(text) > self.max_symbol_ratio:
            return "symbols"
        if (
            self.max_duplicate_line_fraction is not None
            and duplicate_line_fraction(text) > self.max_duplicate_line_fraction
        ):
            return "duplicate_lines"
        if self._pattern is not None and blocklist_hits(text, self._pattern) > 0:
            return "blocklist"
        return None

    def settings(self) -> dict:
        return {
            "min_chars": self.min_chars,
            "max_chars": self.max_chars,
            "max_symbol_ratio": self.max_symbol_ratio,
            "max_duplicate_line_fraction": self.max_duplicate_line_fraction,
            "blocklist_words": len(self.blocklist) if self.blocklist else None,
        }

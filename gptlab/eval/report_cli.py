"""`gptlab report runs/x`: one readable page (report.md + plots) for a whole run.

    gptlab report runs/tiny              # -> runs/tiny/report.md, runs/tiny/report/*.png
    gptlab report --run tiny --out /tmp/report.md
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab report",
        description="Write report.md for a run folder: a summary of checks computed from the files "
        "(each stage beats the previous one), every stage's metrics and evaluations, loss / reward / "
        "KL / accuracy / entropy plots, the tokenizer table, config, code version and hardware.",
    )
    p.add_argument("run_folder", nargs="?", type=Path, help="run folder (default: runs/<--run>)")
    p.add_argument("--run", default="tiny", help="run name, used when no folder is given (default: tiny)")
    p.add_argument("--out", type=Path, help="markdown file to write (default: <run folder>/report.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    from gptlab.common import run_dir
    from gptlab.eval.report import checks, collect, write_report

    args = build_parser().parse_args(argv)
    folder = args.run_folder or run_dir(args.run)
    path = write_report(folder, args.out)
    for c in checks(collect(folder)):
        print(f"{c.mark} {c.stage}: {c.claim} ({c.detail})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

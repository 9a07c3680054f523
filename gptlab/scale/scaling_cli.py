"""`gptlab scaling`: a series of model sizes at several compute budgets and the Chinchilla fit.

    gptlab scaling --run tiny                                   # 4 sizes x 3 budgets on runs/tiny/shards
    gptlab scaling --run tiny --sizes 1x32 2x64 3x96 4x128 6x192 --budgets 1e12 3e12 1e13
    gptlab scaling --run tiny                                   # again: reads the runs back, refits

Prints the table of runs and the fit; writes runs.jsonl, table.md, fit.json and scaling.png.
"""

from __future__ import annotations

from collections.abc import Sequence

from gptlab.commandline import parse
from gptlab.scale import scaling_report
from gptlab.scale.scaling import ScalingConfig, run_series, series_folder


def run(cfg: ScalingConfig) -> int:
    records = run_series(cfg)
    folder = series_folder(cfg)
    text, png = scaling_report.write(folder, records)
    print("\n" + text)
    print(f"wrote {folder}/runs.jsonl, table.md, fit.json and {png.name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ScalingConfig, argv, "gptlab scaling"))

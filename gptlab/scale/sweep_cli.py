"""`gptlab sweep`: search learning rate, width and depth of pretraining with Optuna, pruning trials.

    gptlab sweep --run tiny                                        # TPE, 12 trials, median pruning
    gptlab sweep --run tiny --sampler grid --lr 1e-3 3e-3 1e-2 3e-2 --n-embd 32 64 128
    gptlab sweep --run tiny --trials 20                            # continue the same study to 20

Prints the table of trials (best first, pruned marked) and writes trials.jsonl, table.md and
trials.png beside the study (study.db) in --out.
"""

from __future__ import annotations

from collections.abc import Sequence

from gptlab.commandline import parse
from gptlab.scale import sweep_report
from gptlab.scale.sweep import SweepConfig, run_sweep, sweep_folder


def run(cfg: SweepConfig) -> int:
    study = run_sweep(cfg)
    folder = sweep_folder(cfg)
    text, png = sweep_report.write(study, folder, cfg.steps)
    print("\n" + text)
    print(f"wrote {folder}/trials.jsonl, table.md and {png.name} (study: {folder}/study.db)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(SweepConfig, argv, "gptlab sweep"))

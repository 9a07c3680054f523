"""`gptlab eval`: the evaluation commands. Plain `gptlab eval --from X` scores a stage on held-out
tasks (`gptlab.eval.score_cli`); `judge` pits model A against model B; `diversity` measures mode
collapse across stages.

    gptlab eval --from runs/tiny/sft --tasks play_speaker arithmetic --limit 50
    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl --task arithmetic --judge rule
    gptlab eval diversity --run tiny --samples 8
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import dispatch

# Targets are module names, imported only when their command runs, so `gptlab eval --help` stays cheap.
COMMANDS = {
    "": ("gptlab.eval.score_cli", "score a stage on held-out tasks: bpb, multiple choice, generative -> <stage>/eval.json"),
    "judge": ("gptlab.eval.judge_cli", "model A vs model B on the same prompts, judged in both orders -> arena votes"),
    "diversity": ("gptlab.eval.diversity_cli", "entropy and distinct-n of samples from several stages (mode collapse)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab eval")

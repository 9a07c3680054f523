"""`gptlab rank`: make rankings of K answers per prompt for the reward model.

    gptlab rank generate --from runs/tiny/sft --prompts prompts.txt --k 4   # -> rankings/candidates.jsonl
    gptlab rank label                                  # a person orders them -> rankings/human.jsonl
    gptlab rank label --web --rater ada                # people order them in a browser -> rankings/web.jsonl
    gptlab rank rule --tasks arithmetic play_speaker --k 4 --n 200         # -> rankings/rule.jsonl
    gptlab rank ratings --n 300 --k 4                  # chitchat ratings  -> rankings/ratings.jsonl
    gptlab rank demos --tasks chitchat --n 400 --k 2   # people's replies over samples -> rankings/demos.jsonl
    gptlab rank judge --from runs/tiny/sft             # a judge model orders candidates -> rankings/judge.jsonl
    gptlab rank agree rankings/ratings.jsonl rankings/judge.jsonl   # judge vs people: kappa, tau, top-1

All outputs (but `agree`'s summary) are `ranked` JSONL (gptlab.data.preferences), read by `gptlab reward train --data`.
Each subcommand is its own module (`gptlab.align.rank_<name>`): a config, `run` and `main`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import dispatch

# Targets are module names, imported only when their command runs, so `gptlab rank --help` stays cheap.
COMMANDS = {
    "generate": ("gptlab.align.generate_cli", "sample K answers per prompt into a candidates file"),
    "label": ("gptlab.align.label_cli", "order the candidates by hand in the terminal, or with --web in a browser (resumable)"),
    "rule": ("gptlab.align.rule_cli", "rank K sampled answers per task prompt by the task's reward"),
    "ratings": ("gptlab.align.ratings_cli", "rank chitchat chats on one opening topic by their 1-10 ratings"),
    "demos": ("gptlab.align.demos_cli", "rank a person's written reply above the model's samples, each cut within the shorter"),
    "judge": ("gptlab.align.judge_cli", "rank candidates by a judge model's yes/no verdict"),
    "agree": ("gptlab.align.agree_cli", "agreement of two rankings files on shared items: pairwise, Cohen's kappa, Kendall tau, top-1"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab rank")

"""`gptlab prompt`: prompting without training, measured. `search` ranks instructions and trigger
phrases ("Let's think step by step." and its rivals) on a task's dev split and reports them on its
held-out split (`gptlab.eval.prompt_search`); `shots` pits demonstrations picked by retrieval (BM25,
the nearest training questions) against random ones on the same held-out items (`gptlab.eval.shots`).

    gptlab prompt search --from runs/smol/base --task arithmetic --dev 60 --test 200
    gptlab prompt search --from runs/tiny/sft --task gym --candidates phrases.txt --placement question
    gptlab prompt shots --from runs/smol/base --task play_speaker --shots 4 --test 200
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import dispatch

# Targets are module names, imported only when their command runs, so `gptlab prompt --help` stays cheap.
COMMANDS = {
    "search": ("gptlab.eval.prompt_search_cli", "rank trigger phrases or instructions on a dev split, report them on held-out items"),
    "shots": ("gptlab.eval.shots_cli", "random vs retrieved (BM25 nearest) few-shot demonstrations, paired gain on held-out items"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab prompt")

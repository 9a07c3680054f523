"""`gptlab tokenizer <train|show|eval>`: train the byte-level BPE, look at it, measure it.

    gptlab tokenizer train --run tiny          # runs/tiny/data/train.jsonl -> runs/tiny/tokenizer/
    gptlab tokenizer train --input notes.txt --vocab-size 1024 --out /tmp/tok
    gptlab tokenizer show --run tiny "Hello world! 你好"
    echo "some text" | gptlab tokenizer show --run tiny -
    gptlab tokenizer eval --run tiny           # bytes/token per kind of text + eval.json
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import Table, dispatch

COMMANDS: Table = {
    "train": ("gptlab.tokenizer.train_cli", "learn merges from text and save the tokenizer folder"),
    "show": ("gptlab.tokenizer.show_cli", "print text with its token boundaries coloured and the ids beneath"),
    "eval": ("gptlab.tokenizer.eval_cli", "bytes per token on held-out samples of several kinds (and the run's val.jsonl)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab tokenizer")


if __name__ == "__main__":
    raise SystemExit(main())

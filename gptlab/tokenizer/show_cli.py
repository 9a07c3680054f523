"""`gptlab tokenizer show`: print text with its token boundaries and the ids beneath.

    gptlab tokenizer show --run tiny "Hello world! 你好"
    echo "some text" | gptlab tokenizer show --run tiny -
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import tyro

from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.options import RunArgs
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.show import render


@dataclass(kw_only=True)
class TokenizerShowConfig(RunArgs):
    """Print TEXT with token boundaries (alternating background colours on a terminal, a '│'
    separator otherwise) and the token ids beneath. Special tokens are recognised."""

    text: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="TEXT")]  # text to tokenize (several words are joined by spaces); '-' reads standard input
    tokenizer: str | None = None  # tokenizer folder (overrides --run)
    no_color: bool = False  # separators instead of colours (automatic when stdout is not a terminal or NO_COLOR is set)


def run(cfg: TokenizerShowConfig) -> int:
    tok = Tokenizer.load(cfg.tokenizer or str(run_dir(cfg.run, "tokenizer")))
    text = sys.stdin.read() if list(cfg.text) == ["-"] else " ".join(cfg.text)
    color = not cfg.no_color and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    shown = render(tok, text, color=color)
    print(shown.text)
    print()
    print("ids:", shown.ids)
    print(shown.summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(TokenizerShowConfig, argv, "gptlab tokenizer show"))


if __name__ == "__main__":
    raise SystemExit(main())

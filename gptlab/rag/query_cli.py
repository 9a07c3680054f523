"""`gptlab rag query`: search an index and print the best passages with citations.

    gptlab rag query runs/tiny/rag "Who says 'out, damned spot'?" -k 3
    gptlab rag query runs/tiny/rag "..." --json          # passages + citations as JSON
    gptlab rag query runs/tiny/rag "..." --messages      # the chat messages a model would get
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import tyro

from gptlab.commandline import parse
from gptlab.errors import InputError
from gptlab.rag.retrieve import Retriever, build_rag_messages, citations


@dataclass
class QueryConfig:
    """Search an index and print the best passages with citations."""

    index_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="INDEX_DIR")]  # folder written by `gptlab rag index`
    question: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="QUESTION")]  # the question or search words
    k: Annotated[int, tyro.conf.arg(aliases=("-k",))] = 5  # passages to return
    json: bool = False  # print passages and citations as JSON
    messages: bool = False  # print the chat messages (system prompt + documents + question) as JSON, ready for a chat model


def run(cfg: QueryConfig) -> int:
    if cfg.json and cfg.messages:
        raise InputError(None, "give --json or --messages, not both")
    passages = Retriever.load(cfg.index_dir).search(cfg.question, cfg.k)
    if cfg.json:
        print(
            json.dumps(
                {"passages": [asdict(p) for p in passages], "citations": citations(passages)},
                indent=2,
                ensure_ascii=False,
            )
        )
    elif cfg.messages:
        print(json.dumps(build_rag_messages(cfg.question, passages), indent=2, ensure_ascii=False))
    elif not passages:
        print("no passage shares a word with the question", file=sys.stderr)
    else:
        for p in passages:
            section = f"  ({p.section})" if p.section else ""
            print(f"[{p.rank}] {p.where}  score {p.score:.2f}{section}")
            print("    " + p.text.replace("\n", "\n    ") + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(QueryConfig, argv, "gptlab rag query"))


if __name__ == "__main__":
    raise SystemExit(main())

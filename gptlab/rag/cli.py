"""`gptlab rag <index|query>`: build a BM25 index over a folder of documents, and search it.

    gptlab rag index docs/ --out runs/tiny/rag          # .txt, .md (and .pdf with pypdf)
    gptlab rag query runs/tiny/rag "Who says 'out, damned spot'?" -k 3
    gptlab rag query runs/tiny/rag "..." --json          # passages + citations as JSON
    gptlab rag query runs/tiny/rag "..." --messages      # the chat messages a model would get
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import Table, dispatch

COMMANDS: Table = {
    "index": ("gptlab.rag.index_cli", "chunk and index a folder of .txt/.md/.pdf files"),
    "query": ("gptlab.rag.query_cli", "search an index and print the passages with citations"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab rag")


if __name__ == "__main__":
    raise SystemExit(main())

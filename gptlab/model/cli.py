"""`gptlab model <get>`: real models by name (see gptlab.model.registry)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gptlab.commandline import Table, dispatch

COMMANDS: Table = {
    "get": ("gptlab.model.get_cli", "fetch a real model (smollm2-135m-instruct) and import it as runs/<run>/base"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab model")


if __name__ == "__main__":
    raise SystemExit(main())

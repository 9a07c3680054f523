"""One exception type for bad user input, so the CLI can print it as a single clear line.

Library code raises `InputError(path, message, line=...)`; `gptlab.cli` turns it into
`error: data/x.jsonl:12: line is not valid JSON` and exit status 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a missing file, malformed record, impossible flag combination."""

    def __init__(self, where: str | Path | None, message: str, line: int | None = None):
        self.where = str(where) if where is not None else None
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.where is None:
            return self.message
        loc = self.where if self.line is None else f"{self.where}:{self.line}"
        return f"{loc}: {self.message}"

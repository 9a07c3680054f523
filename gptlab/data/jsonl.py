"""Read the text of prepared JSONL files (`{"text": ..., "source": ..., "id": ...}` per line).

A library beside the commands that read such files: `gptlab data tokenize` (into shards) and
`gptlab tokenizer train|eval` (the text a vocabulary is learned from and measured on).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from gptlab.errors import InputError
from gptlab.fileio import json_loads


def iter_jsonl_records(path: str | Path, fields: tuple[str, ...] = ("text",)) -> Iterator[dict]:
    """Each line of a JSONL file as a dict holding a string under every one of `fields`; blank
    lines are skipped.

    Raises InputError naming the file and line for a line that is not valid UTF-8, not JSON, or
    not an object with those string fields.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    with open(path, "rb") as f:  # bytes, so a bad byte is reported on its own line
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(path, "line is not valid UTF-8", line=lineno) from None
            if not line.strip():
                continue
            try:
                record = json_loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"line is not valid JSON ({e.msg})", line=lineno) from None
            if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in fields):
                wanted = ", ".join(f'"{k}"' for k in fields)
                raise InputError(path, f"expected an object with a string {wanted}", line=lineno)
            yield record


def iter_jsonl_texts(path: str | Path, field: str = "text") -> Iterator[str]:
    """The `field` string of each line of a JSONL file (see `iter_jsonl_records`)."""
    for record in iter_jsonl_records(path, (field,)):
        yield record[field]


class JsonlDocs:
    """Re-iterable documents of a JSONL file, with a length for the progress bar."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            self._n = sum(1 for line in f if line.strip())

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[str]:
        return iter_jsonl_texts(self.path)

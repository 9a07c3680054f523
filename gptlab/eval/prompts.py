"""Prompt files: the user turns that `gptlab rank generate`, `gptlab eval diversity` and RL read
in place of a task's prompts. A library module, so that eval and the commands share one reader
without importing each other."""

from __future__ import annotations

import json
from pathlib import Path

from gptlab.data.conversations import BadRecord
from gptlab.data.preferences import _prompt
from gptlab.errors import InputError
from gptlab.fileio import json_loads


def read_prompts(path: Path) -> list[list[dict]]:
    """A .txt file (one user message per line) or JSONL records with 'prompt' or 'messages'."""
    if not path.is_file():
        raise InputError(path, "prompts file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            if path.suffix != ".jsonl":
                out.append([{"role": "user", "content": line.rstrip("\n")}])
                continue
            try:
                rec = json_loads(line)
                value = rec.get("prompt", rec.get("messages")) if isinstance(rec, dict) else None
                if value is None:
                    raise BadRecord("missing_field", "record needs a 'prompt' (or 'messages') field")
                out.append(_prompt(value))
            except json.JSONDecodeError:
                raise InputError(path, "line is not valid JSON", line=no) from None
            except BadRecord as e:
                raise InputError(path, str(e), line=no) from None
    if not out:
        raise InputError(path, "no prompts in file")
    return out

"""`<stage>/eval.json`: every evaluation of a stage folder, merged by key (task/mode), so that
`gptlab eval` runs with different tasks add up and `gptlab report` reads one file per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptlab.fileio import atomic_write_json, read_json

EVAL_FILE = "eval.json"


def merge_results(path: Path, results: dict[str, dict], meta: dict[str, Any]) -> dict:
    """Merge `results` (key -> record) into the JSON file at `path`, atomically; returns the whole."""
    data = read_json(path) if path.exists() else {}
    if not isinstance(data.get("results"), dict):  # keep what the stage itself wrote beside it
        data["results"] = {}
    data.update(meta)
    data["results"].update(results)
    atomic_write_json(path, data)
    return data


def read_eval(folder: Path) -> dict[str, dict]:
    """The `results` of `<folder>/eval.json`, or {} when there is none."""
    path = Path(folder) / EVAL_FILE
    if not path.exists():
        return {}
    return read_json(path).get("results", {})

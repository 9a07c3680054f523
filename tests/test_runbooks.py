"""Every `gptlab ...` line of the runbooks and the README parses: a renamed flag or a stale
spelling fails here, in seconds, instead of minutes into a user's run. Nothing is run: the
command's options are parsed (tyro), then the test stops it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import tyro

from gptlab import cli

ROOT = Path(__file__).resolve().parents[1]
VALUES = {"RUN": "tiny", "R": "runs/tiny", "stage": "sft", "DOCS": "100", "NGPU": "1", "KEY": "k"}


class Parsed(Exception):
    """Raised after a command's options parsed: the test's way to stop before any work."""


def _expand(text: str) -> str:
    """Variables -> VALUES, else "1"; speedrun.sh's TOY_* flags (empty in a real run) -> ""."""

    def value(m: re.Match) -> str:
        return VALUES.get(m.group(1), "" if m.group(1).startswith("TOY_") else "1")

    return re.sub(r"\$\{?(\w+)(?::-[^}]*)?\}?", value, text)


def _commands(path: Path) -> list[list[str]]:
    """The gptlab command lines of a shell script or a Markdown file's code blocks."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        line = re.sub(r"^\$TRAIN\b", "gptlab", line)
        if path.suffix == ".md":
            line = line.strip("`")
        if not line.startswith("gptlab ") or "<" in line or "|" in line:
            continue
        out.append(shlex.split(_expand(line))[1:])
    return out


CASES = [
    pytest.param(argv, id=f"{path.name}: gptlab {' '.join(argv)[:60]}")
    for path in (ROOT / "runs" / "tiny_cpu.sh", ROOT / "runs" / "speedrun.sh", ROOT / "README.md")
    for argv in _commands(path)
]


def test_the_runbooks_have_commands():
    assert len(CASES) > 30


@pytest.mark.parametrize("argv", CASES)
def test_runbook_line_parses(argv, monkeypatch):
    original = tyro.cli

    def parse_then_stop(cls, *args, **kwargs):
        raise Parsed(original(cls, *args, **kwargs))

    monkeypatch.setattr(tyro, "cli", parse_then_stop)
    with pytest.raises(Parsed):
        cli.main(argv)

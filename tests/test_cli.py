"""The `gptlab` dispatch: every command and subcommand answers --help, explaining every option;
unknown commands exit 2; an InputError becomes one `error: ...` line and exit status 2.

Cases are read from the dispatch tables (a group's module has its own `COMMANDS` table), so a new
command is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import tyro
from tyro import _docstrings

from gptlab import cli


def _run(argv: list[str]) -> int:
    """cli.main, with tyro's SystemExit (from --help or a bad flag) turned into its code."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def _table(target: str) -> dict | None:
    module = importlib.import_module(target.partition(":")[0])
    return getattr(module, "COMMANDS", None) if ":" not in target else None


def _leaves(table: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, (target, _) in table.items():
        path = prefix + ((name,) if name else ())
        sub = _table(target) if isinstance(target, str) else None
        out += _leaves(sub, path) if sub else [path]
    return out


def _groups(table: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, (target, _) in table.items():
        sub = _table(target) if isinstance(target, str) and name else None
        if sub:
            out += [prefix + (name,), *_groups(sub, prefix + (name,))]
    return out


@pytest.mark.parametrize("argv", [pytest.param(a, id=" ".join(a)) for a in _leaves(cli.COMMANDS)])
def test_help_explains_every_option(argv, capsys, monkeypatch):
    seen: list[type] = []
    original = tyro.cli

    def recording(cls, *args, **kwargs):  # records which config class the command parses
        seen.append(cls)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(tyro, "cli", recording)
    code = _run([*argv, "--help"])
    out = capsys.readouterr().out
    assert code == 0
    assert "usage:" in out
    assert seen, "the command did not derive its options from a config dataclass"
    cls = seen[-1]
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no docstring (the command's description)"
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.rstrip("_").replace("_", "-")
        assert flag in out or f.name.upper() in out, f"{flag} is not in the usage text"
        doc = _docstrings.get_field_docstring(cls, f.name, ())
        assert (doc or "").strip(), f"{cls.__name__}.{f.name} has no help comment"


@pytest.mark.parametrize("group", [pytest.param(g, id=" ".join(g)) for g in _groups(cli.COMMANDS)])
def test_groups_list_their_subcommands(group, capsys):
    table = cli.COMMANDS
    for name in group:
        table = _table(table[name][0])
    assert _run([*group, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage:" in out and all(sub in out for sub in table if sub)


def test_no_command_writes_its_own_parser():
    """Options come from config dataclasses; no module builds an argparse parser by hand."""
    import pathlib

    root = pathlib.Path(cli.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py") if "ArgumentParser(" in p.read_text()]
    assert offenders == []


def test_top_level_help_lists_every_command(capsys):
    for argv in ([], ["--help"], ["-h"]):
        assert _run(argv) == 0
        out = capsys.readouterr().out
        assert all(name in out for name in cli.COMMANDS)
    assert _run(["--version"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    "argv", [["frobnicate"], ["data", "frobnicate"]], ids=["command", "data subcommand"]
)
def test_unknown_command_exits_2(argv, capsys):
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert "unknown" in err and "frobnicate" in err


def test_unknown_flag_exits_2(capsys):
    assert _run(["sample", "--no-such-flag"]) == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_input_error_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert _run(["sample", "--from", str(missing), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ")
    assert captured.err.count("\n") == 1 and str(missing) in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_help_piped_into_a_reader_that_leaves_is_no_traceback():
    """`gptlab rl ppo --help | head -1`: the pipe closes early; the command exits quietly."""
    import subprocess
    import sys

    code = "import sys; from gptlab import cli; sys.exit(cli.main(['rl', 'ppo', '--help']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.read(20)  # the first line only, then the reader goes away
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err

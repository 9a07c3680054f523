"""The `gptlab` dispatch: every command and subcommand answers --help, explaining every flag;
unknown commands exit 2; an InputError becomes one `error: ...` line and exit status 2.

Cases are read from the dispatch tables, so a new command is covered without editing this file.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

from gptlab import cli

GROUPS = ("data", "tokenizer", "rag", "rank", "reward")  # commands whose module dispatches to subcommands (SUBCOMMANDS)


def _run(argv: list[str]) -> int:
    """cli.main, with argparse's SystemExit (from --help or a bad flag) turned into its code."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def _help_cases() -> list:
    cases: list[tuple[str, ...]] = [(name,) for name in cli.COMMANDS if name not in GROUPS]
    for group in GROUPS:
        try:
            subs = importlib.import_module(cli.COMMANDS[group][0]).SUBCOMMANDS
        except ImportError:
            cases.append((group, "<dispatch table>"))  # fails below with the import error
            continue
        cases += [(group, sub) for sub in subs]
    cases += [("eval", "judge"), ("eval", "diversity")]  # eval's own sub-entries beside its flags
    return [pytest.param(argv, id=" ".join(argv)) for argv in cases]


@pytest.mark.parametrize("argv", _help_cases())
def test_help_explains_every_flag(argv, capsys, monkeypatch):
    if argv[-1] == "<dispatch table>":
        importlib.import_module(cli.COMMANDS[argv[0]][0])  # raises: the group's module is missing
    parsers: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def recording(self, *args, **kwargs):  # records which parser ran, then parses as usual
        parsers.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", recording)
    code = _run([*argv, "--help"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("usage:")
    assert parsers, "the command did not parse its arguments with argparse"
    parser = parsers[-1]  # the innermost parser is the one that printed the help
    assert (parser.description or "").strip(), "the parser has no description"
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        names = action.option_strings or [
            action.metavar if isinstance(action.metavar, str) else action.dest
        ]
        assert any(n in out for n in names), f"{names} is not in the usage text"
        assert (action.help or "").strip(), f"{names} has no help text"


@pytest.mark.parametrize("group", GROUPS)
def test_groups_list_their_subcommands(group, capsys):
    subs = importlib.import_module(cli.COMMANDS[group][0]).SUBCOMMANDS
    assert _run([group, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage:" in out and all(sub in out for sub in subs)


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

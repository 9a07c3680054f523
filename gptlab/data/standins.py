"""`gptlab data standins`: small local stand-ins for the hub datasets of runs/speedrun.sh.

    gptlab data standins --out runs/speedrun-dry/standins --rows 300

writes `fineweb-edu.parquet` (FineWeb-Edu's columns: text, id, dump, url, file_path, language,
language_score, token_count, score, int_score) and `smoltalk.jsonl` (SmolTalk's rows:
`messages` as [{content, role}], `source`), so `bash runs/speedrun.sh --dry-run` runs the GPU
runbook's every command with no hub access, reading the same schema through the same loaders
(`hf:parquet@data_files=...` and `hf:json@data_files=...` go through `datasets`, as the hub does).

The rows are synthetic and seeded, so every machine writes the same files. Like the web, one row
in 25 is shorter than the runbook's `--min-chars 200` and one in 40 is an exact copy of an
earlier row, so the quality filter and the dedup have something to drop. Some SmolTalk rows open
with a system message and some hold two exchanges, as the real ones do.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.commandline import parse
from gptlab.errors import InputError
from gptlab.fileio import atomic_path, atomic_write_text

FINEWEB_NAME = "fineweb-edu.parquet"
SMOLTALK_NAME = "smoltalk.jsonl"
TOPICS = (
    "photosynthesis", "the water cycle", "fractions", "volcanoes", "the Roman Empire",
    "electric circuits", "cell division", "plate tectonics", "the solar system", "erosion",
    "supply and demand", "the printing press", "magnetism", "food chains", "weather fronts",
)  # fmt: skip
ADJECTIVES = ("small", "warm", "bright", "steady", "hidden", "simple", "heavy", "common", "early")
NOUNS = ("student", "river", "leaf", "teacher", "signal", "engine", "cloud", "seed", "city")
VERBS = ("carries", "changes", "measures", "explains", "follows", "builds", "protects", "shows")
PLACES = ("in the lab", "near the coast", "at school", "in the field", "over time", "at noon")
SOURCES = ("smol-magpie-ultra", "everyday-conversations", "smol-rewrite", "systemchats-30k")


@dataclass
class StandinsConfig:
    """Write small, seeded stand-ins for the hub datasets runs/speedrun.sh reads (FineWeb-Edu as
    parquet, SmolTalk as JSONL, in their real schema), to rehearse it offline: --dry-run."""

    out: Path  # folder to write fineweb-edu.parquet and smoltalk.jsonl into
    rows: int = 300  # rows of each file
    seed: int = 0  # the same seed writes the same files


def _sentence(rng: random.Random) -> str:
    """One short sentence of prose; random enough that two documents share few word 5-grams."""
    a, n, v, m, p = (rng.choice(x) for x in (ADJECTIVES, NOUNS, VERBS, NOUNS, PLACES))
    return f"The {a} {n} {v} {rng.randint(2, 99)} {m}s {p}."


def fineweb_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` rows in FineWeb-Edu's schema (`text` is what the runbook reads)."""
    rng = random.Random(f"fineweb:{seed}")
    rows: list[dict] = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        if i % 40 == 39:  # an exact copy of an earlier page: --dedup removes it
            text = rows[rng.randrange(i)]["text"]
        elif i % 25 == 24:  # a stub page: shorter than --min-chars 200
            text = f"{topic.capitalize()}: see the next page."
        else:
            body = " ".join(_sentence(rng) for _ in range(rng.randint(6, 10)))
            text = f"Lesson {i}: {topic}\n\n{body}"
        score = round(rng.uniform(2.5, 5.0), 6)
        rows.append({
            "text": text,
            "id": f"<urn:uuid:standin-{seed}-{i:06d}>",
            "dump": "CC-MAIN-2024-10",
            "url": f"https://example.org/lessons/{i}",
            "file_path": "standin/000_00000.parquet",
            "language": "en",
            "language_score": round(rng.uniform(0.9, 1.0), 6),
            "token_count": len(text.split()),
            "score": score,
            "int_score": round(score),
        })  # fmt: skip
    return rows


def smoltalk_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` rows in SmolTalk's schema: `messages` [{content, role}] (system first, if any), `source`."""
    rng = random.Random(f"smoltalk:{seed}")
    rows = []
    for i in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        topic = rng.choice(TOPICS)
        msgs = [
            {"content": f"What is {a} + {b}?", "role": "user"},
            {"content": f"{a} + {b} = {a + b}.", "role": "assistant"},
        ]
        if i % 3 == 1:
            msgs += [
                {"content": f"Tell me one thing about {topic}.", "role": "user"},
                {"content": _sentence(rng), "role": "assistant"},
            ]
        if i % 5 == 2:
            msgs.insert(0, {"content": "You are a helpful assistant.", "role": "system"})
        rows.append({"messages": msgs, "source": SOURCES[i % len(SOURCES)]})
    return rows


def write_standins(out: Path, rows: int = 300, seed: int = 0) -> tuple[Path, Path]:
    """Write both files into `out` (each atomically); return their paths."""
    try:  # optional dependency (the `hf` extra), as for reading parquet
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(None, "writing parquet needs pyarrow: pip install pyarrow") from None
    out.mkdir(parents=True, exist_ok=True)
    fineweb, smoltalk = out / FINEWEB_NAME, out / SMOLTALK_NAME
    with atomic_path(fineweb) as tmp:
        pq.write_table(pa.Table.from_pylist(fineweb_rows(rows, seed)), tmp)
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in smoltalk_rows(rows, seed))
    atomic_write_text(smoltalk, "".join(lines))
    return fineweb, smoltalk


def run(cfg: StandinsConfig) -> int:
    if cfg.rows < 1:
        raise InputError("--rows", f"give at least 1 row, got {cfg.rows}")
    for path in write_standins(cfg.out, cfg.rows, cfg.seed):
        print(f"wrote {path} ({cfg.rows} rows)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(StandinsConfig, argv, "gptlab data standins"))


if __name__ == "__main__":
    raise SystemExit(main())

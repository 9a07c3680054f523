"""`gptlab data prepare`: sources -> quality filters -> dedup -> mixture -> train.jsonl / val.jsonl.

    gptlab data prepare                                   # Shakespeare into runs/tiny/data/
    gptlab data prepare --source shakespeare notes/ data.jsonl@field=content,weight=2 \\
        --target-chars 20M --run mine
    gptlab data prepare --source shakespeare chitchat --weights runs/tiny/mixture/weights.json
                                                          # weights learned by `data mixture-search`

Writes into `runs/<run>/data/` (or `--out`): `train.jsonl` and `val.jsonl`, one
`{"text", "source", "id"}` per line, and `report.json` with, per source and overall, the
documents in and out of each step, so the counts add up:
`docs_in == docs_kept + sum(dropped) + exact_duplicates + near_duplicates`, and
`docs_kept == train_unique_docs + val_docs`. Every file is written atomically, after all the
reading is done, so a failed run leaves no half-written train.jsonl.

Deduplication runs across sources in the order given: the first copy seen is kept.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from gptlab.commandline import parse
from gptlab.common import format_duration, git_commit, human_bytes, run_dir
from gptlab.data.clean import Filters, load_blocklist
from gptlab.data.dedup import Deduplicator
from gptlab.data.document import Document
from gptlab.data.mixture import mix
from gptlab.data.sources import Skips, SourceSpec, load_config, parse_spec, read_source
from gptlab.errors import InputError
from gptlab.fileio import atomic_open, atomic_write_json, read_json
from gptlab.options import RunArgs


@dataclass
class PrepareConfig(RunArgs):
    """Read text sources, drop low-quality and duplicate documents, mix the sources by weight or
    epochs, and write train.jsonl, val.jsonl and report.json.

    A source is LOCATION[@key=value,...]: LOCATION is shakespeare, chitchat, a folder of
    .txt/.md, a .txt/.md file, a .jsonl, a .parquet or hf:<dataset>[:<config>]; keys: name,
    field (JSONL key / column, default text), split (hf, default train), config, data_files (hf),
    limit, weight, epochs. Example: --source shakespeare data.jsonl@field=content,weight=2"""

    source: tuple[str, ...] = ()  # sources to read, all after one --source (default: shakespeare)
    sources_file: Path | None = None  # JSON list of source objects (e.g. [{"location": "shakespeare", "epochs": 2}]); read before --source
    out: Path | None = None  # output folder (overrides --run)
    lenient: bool = False  # skip bad records and files (counted per reason in the report) instead of stopping at the first with an error
    # quality filters (None switches one off)
    min_chars: int | None = 50  # drop shorter documents
    max_chars: int | None = 1_000_000  # drop longer documents
    max_symbol_ratio: float | None = 0.1  # drop documents with more symbols (not letters, digits, spaces, prose punctuation) per letter
    max_duplicate_line_fraction: float | None = 0.3  # drop documents whose repeated lines hold more of their characters
    blocklist: Path | None = None  # drop documents containing any word of this file (one word or phrase a line; whole words, any case)
    # deduplication
    dedup: Literal["near", "exact"] | None = "near"  # near: exact then MinHash near duplicates; exact: hash only; None: off
    near_threshold: float = 0.8  # estimated Jaccard similarity of word 5-grams at which a document counts as a near duplicate of an earlier one
    # mixture and split
    val_fraction: float = 0.05  # share of each source's documents held out for validation
    target_chars: int | str | None = None  # total training characters to reach, shared by the sources' weights (e.g. 20M, 1.5G); sources with epochs= keep them
    weights: Path | None = None  # JSON {source name: weight} setting those sources' weight= (e.g. the weights.json of `gptlab data mixture-search`)
    seed: int = 1337  # seed of the split, subsampling and shuffle


def parse_size(text: str | int) -> int:
    """'20M' -> 20_000_000, '1.5G' -> 1_500_000_000, '50000' -> 50000 (characters)."""
    m = re.fullmatch(r"\s*([\d.]+(?:e\d+)?)\s*([kKmMgG]?)\s*", str(text))
    if not m:
        raise InputError("--target-chars", f"not a size: {text!r} (e.g. 5000000, 20M, 1.5G)")
    try:
        number = float(m.group(1))
    except ValueError:  # "1.2.3"
        raise InputError("--target-chars", f"not a size: {text!r} (e.g. 5000000, 20M, 1.5G)") from None
    return int(number * {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()])


def _unique_names(specs: list[SourceSpec]) -> list[str]:
    names: list[str] = []
    for spec in specs:
        base = spec.default_name()
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def apply_weights(specs: list[SourceSpec], path: Path) -> None:
    """Set `weight` of each source named in the JSON file `path` ({name: weight}); every name must
    be a source of this run, and a named source must not also have epochs=."""
    weights = read_json(path)
    if not isinstance(weights, dict) or not all(
        isinstance(w, (int, float)) and w > 0 for w in weights.values()
    ):
        raise InputError(path, "expected a JSON object {source name: weight > 0}")
    names = _unique_names(specs)
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise InputError(path, f"no source named {', '.join(unknown)} (sources: {', '.join(names)})")
    for spec, name in zip(specs, names):
        if name in weights:
            if spec.epochs is not None:
                raise InputError(path, f"source {name} has epochs=: give it a weight or epochs, not both")
            spec.weight = float(weights[name])


def _progress(docs, desc: str):
    # disable=None: a bar on a terminal, silence in logs and tests.
    return tqdm(docs, desc=desc, unit=" docs", file=sys.stderr, disable=None, leave=False)


def _write_jsonl(path: Path, docs: list[Document]) -> None:
    with atomic_open(path) as f:
        for d in docs:
            f.write(
                json.dumps({"text": d.text, "source": d.source, "id": d.id}, ensure_ascii=False)
                + "\n"
            )


_SUMMED = ("docs_in", "chars_in", "bytes_in", "exact_duplicates", "near_duplicates", "docs_kept",
           "chars_kept", "val_docs", "val_chars", "train_unique_docs", "train_docs", "train_chars")  # fmt: skip


def read_clean_dedup(
    spec: SourceSpec, name: str, filters: Filters, dedup: Deduplicator | None, lenient: bool
) -> tuple[list[Document], dict]:
    """One source through the filters and the (shared) deduplicator: (kept docs, its counts)."""
    skips = Skips(lenient)
    s: dict = {"source": name, "location": spec.location, "docs_in": 0, "chars_in": 0, "bytes_in": 0,
               "dropped": dict.fromkeys(Filters.NAMES, 0), "exact_duplicates": 0, "near_duplicates": 0}  # fmt: skip
    kept: list[Document] = []
    for doc in _progress(read_source(spec, skips, name), name):
        s["docs_in"] += 1
        s["chars_in"] += len(doc.text)
        s["bytes_in"] += len(doc.text.encode("utf-8"))
        if (reason := filters.check(doc.text)) is not None:
            s["dropped"][reason] += 1
        elif dedup is not None and (dup := dedup.check(doc.text)) is not None:
            s[f"{dup}_duplicates"] += 1
        else:
            kept.append(doc)
    s["skipped"] = dict(sorted(skips.counts.items()))
    s["docs_kept"] = len(kept)
    s["chars_kept"] = sum(len(d.text) for d in kept)
    return kept, s


def prepare(
    specs: list[SourceSpec],
    out_dir: Path,
    filters: Filters,
    dedup: Deduplicator | None,
    lenient: bool = False,
    val_fraction: float = 0.05,
    seed: int = 1337,
    target_chars: int | None = None,
) -> dict:
    """Run the whole data stage and write its three files; returns the report."""
    t0 = time.time()
    groups: dict[str, list[Document]] = {}
    stats: dict[str, dict] = {}
    for spec, name in zip(specs, _unique_names(specs)):
        groups[name], stats[name] = read_clean_dedup(spec, name, filters, dedup, lenient)
    weights = {name: (spec.weight, spec.epochs) for spec, name in zip(specs, groups)}
    train, val, rows = mix(groups, weights, val_fraction, seed, target_chars)
    if not train:
        raise InputError(None, "no training documents left after filtering and deduplication: "
                         "loosen the filters (--min-chars ...) or add sources")  # fmt: skip
    for row in rows:
        stats[row.source].update(
            val_docs=row.val_docs, val_chars=row.val_chars, train_unique_docs=row.docs,
            epochs=row.epochs, train_docs=row.out_docs, train_chars=row.out_chars, share=row.share,
        )  # fmt: skip
    overall: dict = {"source": "total", **{k: sum(s[k] for s in stats.values()) for k in _SUMMED}}
    overall["dropped"] = {f: sum(s["dropped"][f] for s in stats.values()) for f in Filters.NAMES}
    overall["skipped"] = dict(sum((Counter(s["skipped"]) for s in stats.values()), Counter()))
    overall["chars_out"] = overall["train_chars"] + overall["val_chars"]
    overall["bytes_out"] = sum(len(d.text.encode("utf-8")) for d in train + val)

    _write_jsonl(out_dir / "val.jsonl", val)
    _write_jsonl(out_dir / "train.jsonl", train)
    report = {
        "sources": list(stats.values()),
        "overall": overall,
        "mixture": [r.as_dict() for r in rows],
        "settings": {
            "sources": [{k: v for k, v in asdict(sp).items() if v is not None} for sp in specs],
            "filters": filters.settings(),
            "dedup": dedup.settings() if dedup is not None else None,
            "lenient": lenient,
            "val_fraction": val_fraction,
            "seed": seed,
            "target_chars": target_chars,
        },
        "files": {"train": str(out_dir / "train.jsonl"), "val": str(out_dir / "val.jsonl")},
        "git_commit": git_commit(),
        "seconds": round(time.time() - t0, 3),
    }
    atomic_write_json(out_dir / "report.json", report)
    return report


def summary(report: dict) -> str:
    """The report as a short table for the terminal."""
    head = (
        f"{'source':<16}{'docs in':>9}{'filtered':>9}{'dups':>7}{'skipped':>8}{'val':>6}"
        f"{'epochs':>8}{'train docs':>11}{'train chars':>13}{'share':>8}"
    )
    lines = [head, "-" * len(head)]
    for s in report["sources"] + [report["overall"]]:
        dups = s["exact_duplicates"] + s["near_duplicates"]
        epochs = f"{s['epochs']:.2f}" if "epochs" in s else ""
        share = f"{100 * s.get('share', 1.0):.1f}%"
        lines.append(
            f"{s['source'][:15]:<16}{s['docs_in']:>9,}{sum(s['dropped'].values()):>9,}{dups:>7,}"
            f"{sum(s['skipped'].values()):>8,}{s['val_docs']:>6,}{epochs:>8}{s['train_docs']:>11,}"
            f"{s['train_chars']:>13,}{share:>8}"
        )
    o = report["overall"]
    drops = ", ".join(f"{k} {v:,}" for k, v in o["dropped"].items() if v) or "none"
    skips = ", ".join(f"{k} {v:,}" for k, v in o["skipped"].items()) or "none"
    dups = f"{o['exact_duplicates']:,} exact, {o['near_duplicates']:,} near"
    sizes = f"in {human_bytes(o['bytes_in'])}, out {human_bytes(o['bytes_out'])}"
    docs = f"train {o['train_docs']:,} docs, val {o['val_docs']:,} docs"
    lines.append(f"filtered: {drops}; duplicates: {dups}; skipped: {skips}")
    lines.append(f"{sizes} ({docs}) in {format_duration(report['seconds'])}")
    lines.append(f"wrote {report['files']['train']}, {report['files']['val']} and report.json")
    return "\n".join(lines)


def run(cfg: PrepareConfig) -> int:
    specs = load_config(cfg.sources_file) if cfg.sources_file else []
    specs += [parse_spec(s) for s in cfg.source]
    if not specs:
        specs = [parse_spec("shakespeare")]
    if cfg.weights is not None:
        apply_weights(specs, cfg.weights)
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise InputError("--val-fraction", "must be in [0, 1)")
    if not 0.0 < cfg.near_threshold <= 1.0:
        raise InputError("--near-threshold", "must be in (0, 1]")
    filters = Filters(
        cfg.min_chars,
        cfg.max_chars,
        cfg.max_symbol_ratio,
        cfg.max_duplicate_line_fraction,
        load_blocklist(cfg.blocklist) if cfg.blocklist else None,
    )
    dedup = None
    if cfg.dedup is not None:
        dedup = Deduplicator(cfg.near_threshold if cfg.dedup == "near" else None)
    out_dir = cfg.out if cfg.out is not None else run_dir(cfg.run, "data")
    target = parse_size(cfg.target_chars) if cfg.target_chars is not None else None
    report = prepare(
        specs, out_dir, filters, dedup, cfg.lenient, cfg.val_fraction, cfg.seed, target
    )
    print(summary(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(PrepareConfig, argv, "gptlab data prepare"))


if __name__ == "__main__":
    raise SystemExit(main())

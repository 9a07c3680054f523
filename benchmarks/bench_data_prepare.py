"""Time `gptlab data prepare` on the default corpus (Shakespeare, 38 plays, 4.8 M characters).

Three figures, each the median of --repeats runs:
  cli        wall time of the command as a user runs it (a fresh Python: imports included)
  stages     in-process time of each step: read (plays.jsonl -> scene documents), filters,
             dedup (exact + MinHash LSH), mix (split, repeat, shuffle), write (train/val jsonl)
  floor      the peer: reading the same documents and writing them as JSONL with no filtering,
             deduplication or mixing (the I/O lower bound); `ratio` = in-process total / floor

    python benchmarks/bench_data_prepare.py --repeats 5

Writes benchmarks/results/data_prepare.json (with the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gptlab.data import corpora
from gptlab.data.clean import Filters
from gptlab.data.dedup import Deduplicator
from gptlab.data.mixture import mix
from gptlab.data.prepare import _write_jsonl
from gptlab.data.sources import Skips, parse_spec, read_source

RESULTS = Path(__file__).resolve().parent / "results" / "data_prepare.json"


def stages(out: Path) -> dict[str, float]:
    t = {}
    t0 = time.perf_counter()
    docs = list(read_source(parse_spec("shakespeare"), Skips()))
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    filters = Filters()
    docs = [d for d in docs if filters.check(d.text) is None]
    t["filters"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dd = Deduplicator()
    docs = [d for d in docs if dd.check(d.text) is None]
    t["dedup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train, val, _ = mix({"shakespeare": docs}, {})
    t["mix"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _write_jsonl(out / "train.jsonl", train)
    _write_jsonl(out / "val.jsonl", val)
    t["write"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    return t


def floor(out: Path) -> float:
    t0 = time.perf_counter()
    docs = list(read_source(parse_spec("shakespeare"), Skips()))
    _write_jsonl(out / "all.jsonl", docs)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is reported")
    args = ap.parse_args()
    corpora.ensure("shakespeare")
    load_before = os.getloadavg()
    cli, stage_runs, floors = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gptlab", "data", "prepare", "--out", f"{tmp}/cli{i}"],
                           check=True, capture_output=True)  # fmt: skip
            cli.append(time.perf_counter() - t0)
            stage_runs.append(stages(Path(tmp)))
            floors.append(floor(Path(tmp)))
    med = {k: statistics.median(r[k] for r in stage_runs) for k in stage_runs[0]}
    result = {
        "command": "gptlab data prepare (default: shakespeare)",
        "repeats": args.repeats,
        "cli_wall_s_median": round(statistics.median(cli), 3),
        "cli_wall_s_all": [round(x, 3) for x in cli],
        "stages_s_median": {k: round(v, 3) for k, v in med.items()},
        "floor_read_write_s_median": round(statistics.median(floors), 3),
        "ratio_total_to_floor": round(med["total"] / statistics.median(floors), 2),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

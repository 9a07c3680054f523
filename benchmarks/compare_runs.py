"""Are two run folders the same run? Every weight, shard and tokenizer file byte for byte, every
.json/.jsonl record with its timing fields (seconds, tok/s, dates, commit) set aside; report.md
above its config section with the seconds of training masked.

    python benchmarks/compare_runs.py RUN_A/runs/tiny RUN_B/runs/tiny     # exit 1 when anything differs

Used to show that a refactor changes no number, and that two runs of one commit give the same report.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TIMING = re.compile(r"(seconds|elapsed|tok_s|per_s|time|_s$|wall|throughput|updated|git_commit)", re.IGNORECASE)
BYTES = (".safetensors", ".bin", ".tiktoken")


def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if not TIMING.search(k)}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


def same_file(fa: Path, fb: Path) -> bool:
    if fa.suffix in BYTES:
        return fa.read_bytes() == fb.read_bytes()
    if fa.suffix == ".jsonl":
        rows = [[strip(json.loads(line)) for line in f.read_text().splitlines() if line.strip()] for f in (fa, fb)]
        return rows[0] == rows[1]
    return strip(json.loads(fa.read_text())) == strip(json.loads(fb.read_text()))


def report_body(path: Path) -> str:
    text = path.read_text().split("## Config, code version and hardware")[0]
    return re.sub(r"[0-9.]+ s of training", "N s of training", text)


def main(a: Path, b: Path) -> int:
    equal, differ = 0, []
    for fa in sorted(a.rglob("*")):
        rel = fa.relative_to(a)
        if fa.is_dir() or fa.suffix not in (".json", ".jsonl", *BYTES) or rel.name == "train_state.json":
            continue
        fb = b / rel
        if fb.exists() and same_file(fa, fb):
            equal += 1
        else:
            differ.append(str(rel))
    for rel in differ:
        print("differs:", rel)
    same_report = (a / "report.md").exists() and report_body(a / "report.md") == report_body(b / "report.md")
    print(f"{equal} files equal, {len(differ)} differ; report.md {'identical' if same_report else 'DIFFERS'}")
    return 0 if same_report and not differ else 1


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))

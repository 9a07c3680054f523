"""Every report check across several runs of the same runbook (one per seed): is each one green in
all of them, and by how much?

    for s in 1 2 3; do RUN=tiny_s$s SEED=$s bash runs/tiny_cpu.sh; done
    python benchmarks/seed_checks.py runs/tiny_s1 runs/tiny_s2 runs/tiny_s3    # markdown table; exit 1 if any check fails

Reads each run's files through `gptlab.eval.report` (the same checks `gptlab report` writes), so the
table cannot disagree with the reports. A cell is the verdict and the check's headline figure: the
paired gain with its 95% interval where the check has one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gptlab.eval.report import PASS, checks, collect

HEADLINES = [re.compile(p) for p in (
    r"paired gain [+-][0-9.]+ \(95% CI [+-]?[0-9.]+ to [+-]?[0-9.]+",  # sft, rl, grpo
    r"[0-9.]+ vs best baseline [0-9.]+ on [0-9]+ held-out pairs, margin 95% CI [+-][0-9.]+ to [+-][0-9.]+",  # rm
    r"reply length [0-9.]+ -> [0-9.]+ tokens",  # the reward-hacking watch
    r"[+-]?[0-9]+\.[0-9]+ vs [+-]?[0-9]+\.[0-9]+",  # base
)]


def headline(detail: str) -> str:
    """The part of a check's evidence that says how far it is from failing."""
    for pattern in HEADLINES:
        if m := pattern.search(detail):
            text = m.group(0)
            return text + ")" * (text.count("(") - text.count(")"))
    return ""


def main(argv: list[str]) -> int:
    runs = [Path(a) for a in argv]
    if not runs:
        print(__doc__)
        return 2
    table: dict[tuple[str, str], list[str]] = {}
    failed = 0
    for i, run in enumerate(runs):
        for c in checks(collect(run)):
            cells = table.setdefault((c.stage, c.claim), [""] * len(runs))
            cells[i] = f"{c.mark} {headline(c.detail)}".strip()
            failed += c.mark != PASS
    print("| stage | check | " + " | ".join(r.name for r in runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    for (stage, claim), cells in table.items():
        print(f"| {stage} | {claim} | " + " | ".join(cells) + " |")
    green = sum(all(c.startswith(PASS) for c in cells) for cells in table.values())
    print(f"\n{green} of {len(table)} checks green in all {len(runs)} runs")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""What an RL run leaves beside its policy: eval.json (held-out before / after, paired gains,
rollout medians) and rl.png (reward, KL, entropy, clip fraction, length and held-out curves)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from gptlab.eval.heldout_stats import ITEMS, paired_summary
from gptlab.fileio import atomic_write_json, read_json
from gptlab.train.plots import plot_panels
from gptlab.train.tracker import read_metrics


def plot_rl(metrics_path: Path, out_path: Path, title: str) -> Path | None:
    """rl.png: one axis per logged curve group (reward, KL, entropy, length, held-out...)."""
    return plot_panels(read_metrics(metrics_path), out_path, title)


def write_eval(out: Path, algo: str, metrics_path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """eval.json: the first and last held-out records (before / after), medians of the run."""
    recs = read_metrics(metrics_path)
    evals = [r for r in recs if any(k.startswith("heldout_") for k in r)]
    train = [r for r in recs if "loss" in r]
    strip = lambda r: {k: v for k, v in r.items() if k.startswith("heldout_")}
    report: dict[str, Any] = {"algo": algo, **extra}
    if evals:
        report["before"], report["after"] = strip(evals[0]), strip(evals[-1])
        report["before_step"], report["after_step"] = evals[0]["step"], evals[-1]["step"]
        report["delta"] = {k: report["after"][k] - report["before"][k] for k in report["after"] if k in report["before"]}
    paired = paired_summary(out / ITEMS)
    if paired:  # the same held-out prompts before and after: gains with 95% intervals
        report["paired"] = paired
    for key in ("gen_tok_per_s", "kl", "reward", "entropy", "clipfrac", "response_len"):
        vals = [r[key] for r in train if r.get(key) is not None]
        if vals:
            report[f"{key}_first"], report[f"{key}_last"] = vals[0], vals[-1]
            if key in ("gen_tok_per_s", "kl"):
                report[f"{key}_median"] = statistics.median(vals)
                report[f"{key}_max"] = max(vals)
    path = out / "eval.json"
    if path.exists():  # keep `gptlab eval` results written beside it
        old = read_json(path)
        if "results" in old:
            report["results"] = old["results"]
    atomic_write_json(path, report)
    return report


def summary(report: dict[str, Any]) -> str:
    """' | heldout_reward -4.9 -> -1.8 | rollouts 761 tok/s' for the run's last line."""
    line = ""
    for k, v in report.get("before", {}).items():
        line += f" | {k} {v:.3f} -> {report['after'].get(k, float('nan')):.3f}"
    if "gen_tok_per_s_median" in report:
        line += f" | rollouts {report['gen_tok_per_s_median']:,.0f} tok/s"
    return line

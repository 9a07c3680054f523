"""What the held-out items file says, read without torch: the first evaluation (the SFT model)
against the last (the trained policy) on the same prompts, for the RL stages' eval.json and for
`gptlab report`, which recomputes it from the file so older runs gain newer statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.eval.metrics import paired_gain, roc_auc

ITEMS = "heldout_items.jsonl"


def read_items(items_path: Path | None) -> list[dict[str, Any]]:
    if items_path is None or not Path(items_path).exists():
        return []
    return [json.loads(s) for s in Path(items_path).read_text(encoding="utf-8").splitlines() if s.strip()]


def paired_summary(items_path: Path) -> dict[str, dict[str, Any]]:
    """First vs last evaluation in `items_path`: {score: paired_gain(before, after)}, plus
    `length_matched_reward` (the last evaluation's replies against the first's, each pair cut to
    one length); {} if there are fewer than two evaluations."""
    lines = read_items(items_path)
    if len(lines) < 2:
        return {}
    first, last = lines[0], lines[-1]
    skip = {"replies", "matched_reward", "matched_reward_before"}
    out = {k: paired_gain(first[k], last[k]) for k in last
           if k not in skip and k in first and len(first[k]) == len(last[k]) and first[k]}
    if last.get("matched_reward"):
        out["length_matched_reward"] = paired_gain(last["matched_reward_before"], last["matched_reward"])
    if (sep := reward_auc_change(first, last)) is not None:
        out["reward_auc"] = sep
    return out


def _auc(right: np.ndarray, reward: np.ndarray) -> float:
    return roc_auc(right, reward) if 0 < right.sum() < len(right) else float("nan")


def reward_auc_change(first: dict[str, Any], last: dict[str, Any], n: int = 2000,
                      seed: int = 0) -> dict[str, Any] | None:
    """Does the reward model still rank the policy's right replies (by the task's checker) above its
    wrong ones? Its AUC over the greedy replies before and after, with a 95% interval of the change
    (prompts resampled, each keeping its before and after), and the reward gain on the prompts whose
    reply is wrong after against those whose reply is right.

    This is reward hacking caught in the act: a policy that learns to make wrong replies look right to
    the reward model raises its score without raising accuracy, and the AUC falls (seed 004). None
    without per-prompt accuracy and reward for every prompt, or when a side has one class only.
    """
    keys = ("accuracy", "reward")
    sizes = {len(d.get(k) or []) for d in (first, last) for k in keys}
    if len(sizes) != 1 or 0 in sizes:  # a prompt without a checker has a reward but no accuracy
        return None
    a0, r0, a1, r1 = (np.asarray(d[k], dtype=np.float64) for d in (first, last) for k in keys)
    a0, a1 = a0 >= 1.0, a1 >= 1.0
    before, after = _auc(a0, r0), _auc(a1, r1)
    if np.isnan(before) or np.isnan(after):
        return None
    pick = np.random.default_rng(seed).integers(0, len(a0), size=(n, len(a0)))
    draws = np.array([_auc(a1[i], r1[i]) - _auc(a0[i], r0[i]) for i in pick])
    lo, hi = np.nanquantile(draws, [0.025, 0.975])
    gain = r1 - r0
    return {"n": len(a0), "before": before, "after": after, "gain": after - before, "ci95": [float(lo), float(hi)],
            "reward_gain_wrong": float(gain[~a1].mean()) if (~a1).any() else None,
            "reward_gain_right": float(gain[a1].mean()) if a1.any() else None,
            "n_wrong": int((~a1).sum()), "n_right": int(a1.sum())}

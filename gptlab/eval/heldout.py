"""Held-out evaluation of on-policy RL (PPO, GRPO): greedy replies to fixed prompts, scored one by one.

The hook runs before training, at `--eval-every`, and after. Each run appends one line per prompt
score list to `heldout_items.jsonl`:

    {"len": [31, 12, ...], "accuracy": [0.0, 1.0, ...], "task_reward": [...], "reward": [...]}

so the first and last lines compare the SFT model and the trained policy on the *same* prompts.
That pairing is what lets a gain of a handful of problems out of hundreds be told from noise:
`paired_summary` (gptlab.eval.heldout_stats) gives each score's mean gain with a 95% bootstrap
interval, and for accuracy the problems fixed and broken with the sign test's p-value
(gptlab.eval.metrics.paired_gain).

Each line also keeps the greedy replies' token ids (`replies`). With a reward model (PPO), every
evaluation after the first also scores each reply and the first evaluation's reply to the same
prompt *cut to the same number of tokens* (`matched_reward`, `matched_reward_before`): a reward
model that reads more machine-made text in a longer reply pays a policy for saying less, and
the length-matched gain is what is left when length cannot help.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from gptlab.algos.rollout import generate, reply_messages
from gptlab.eval.heldout_stats import read_items


def make_heldout_eval(engine: Any, tok: Any, held: list, max_new: int, reward_fn: Any = None,
                      items_path: Path | None = None, samples: int = 0, temperature: float = 1.0,
                      top_k: int | None = None, seed: int = 0) -> Callable[[nn.Module], dict[str, float]]:
    """Hook: greedy replies to the held-out prompts -> mean RM reward (PPO), task accuracy and task
    reward (prompts with a verifier), reply length; per-prompt scores appended to `items_path`.

    With `samples` K > 0, also K replies per prompt sampled as in the rollouts (same seed at every
    evaluation, so before and after draw the same random numbers): `sampled_*` scores are each
    prompt's mean over its K replies. RL trains the sampled policy; greedy decoding reads only its
    mode, which a short run sharpens more than it moves, so the two can disagree.
    """
    def score(replies: list[list[int]], prompts: list, k: int, prefix: str) -> dict[str, list[float]]:
        items: dict[str, list[float]] = {}
        if reward_fn is not None:
            items["reward"] = [float(x) for x in reward_fn(prompts, replies)]
        if any(p.task is not None for p in prompts):
            texts = [(p, reply_messages(tok, r)[0]) for p, r in zip(prompts, replies)]
            # the task's verifiable reward (graded for some tasks): what GRPO maximises
            items["accuracy"] = [float(p.task is not None and p.task.evaluate(p.item, t)) for p, t in texts]
            items["task_reward"] = [float(p.task.reward(p.item, t)) if p.task is not None else 0.0 for p, t in texts]
        scored = [i for i, p in enumerate(held) if p.task is not None]
        out = {}
        for key, vals in items.items():
            per_prompt = [statistics.fmean(vals[i * k:(i + 1) * k]) for i in range(len(held))]
            out[prefix + key] = per_prompt if key == "reward" else [per_prompt[i] for i in scored]
        return out

    first: list[list[int]] = []  # the SFT model's greedy replies: this run's first evaluation's

    def evaluate(model: nn.Module) -> dict[str, float]:
        if not held:
            return {}
        if not first:  # read at call time, so a fresh run's cleared folder is what is read
            first.extend(_first_replies(items_path))  # a resumed run's first evaluation, on disk
        ro = generate(engine, [p.ids for p in held], max_new, temperature=0.0)
        items: dict[str, Any] = {"len": [float(len(r)) for r in ro.replies], **score(ro.replies, held, 1, "")}
        if reward_fn is not None and len(first) == len(held):
            now, then = zip(*(same_length(a, b, engine.eos_ids) for a, b in zip(ro.replies, first)))
            items["matched_reward"] = [float(x) for x in reward_fn(held, list(now))]
            items["matched_reward_before"] = [float(x) for x in reward_fn(held, list(then))]
        elif not first:
            first.extend(ro.replies)
        if samples > 0:
            many = [p for p in held for _ in range(samples)]
            sampled = generate(engine, [p.ids for p in many], max_new, temperature, top_k, seed=seed)
            items.update(score(sampled.replies, many, samples, "sampled_"))
        means = {f"heldout_{k}": statistics.fmean(v) for k, v in items.items() if v}
        if items_path is not None:
            with open(items_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({**items, "replies": ro.replies}) + "\n")
        return means

    return evaluate


def same_length(a: list[int], b: list[int], stop_ids: Any = ()) -> tuple[list[int], list[int]]:
    """Two replies cut to the shorter one's length, end-of-turn ids dropped first.

    >>> same_length([5, 6, 7, 0], [8, 9, 0], stop_ids={0})
    ([5, 6], [8, 9])
    """
    a = a[:-1] if a and a[-1] in stop_ids else a
    b = b[:-1] if b and b[-1] in stop_ids else b
    n = min(len(a), len(b))
    return a[:n], b[:n]


def _first_replies(items_path: Path | None) -> list[list[int]]:
    lines = read_items(items_path)
    return list(lines[0].get("replies", [])) if lines else []

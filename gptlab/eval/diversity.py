"""`gptlab eval diversity`: mode collapse, measured, for base vs SFT vs RL models on the same prompts.

RLHF sharpens the policy toward what the reward model likes; the price is diversity (Kirk et al.,
"Understanding the effects of RLHF on LLM generalisation and diversity"). Each model samples K
replies per prompt at the same temperature and seeds, and we report:

- `entropy`: the mean per-token entropy (nats) of the model's next-token distribution along its
  own samples: how spread out the policy is where it actually goes;
- `distinct_n` (n = 1, 2, 3): distinct n-grams / all n-grams over every reply (Li et al. 2016);
- `distinct_2_within`: the same, among the K replies to one prompt, averaged over prompts: a
  collapsed model says the same thing to the same question;
- `identical_frac`: prompts whose K replies are all the same; `length`: mean reply tokens.

    gptlab eval diversity --run tiny                      # base, sft, rl of runs/tiny (those that exist)
    gptlab eval diversity --models sft=runs/tiny/sft rl=runs/tiny/rl --samples 8

The command is `gptlab.eval.diversity_cli`; this module holds the measures. n-grams are over token ids, so compare models that share a tokenizer (one run's stages do).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from gptlab.algos.rollout import Rollouts, masked_mean, token_logprobs
from gptlab.infer.loading import make_engine


def distinct_n(seqs: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of `seqs` (0 when there are none).

    >>> distinct_n([[1, 2, 3], [1, 2, 4]], 1), distinct_n([[1, 2, 3], [1, 2, 4]], 2)
    (0.6666666666666666, 0.75)
    """
    grams = [tuple(s[i : i + n]) for s in seqs for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sample_stats(model: Any, tok: Any, prompts: list[list[int]], samples: int, max_new_tokens: int,
                 temperature: float, seed: int, max_batch: int = 64) -> dict[str, float]:
    """Sample `samples` replies per prompt with `model`; the diversity figures of the module doc."""

    engine = make_engine(model, tok, max_batch=min(max_batch, len(prompts) * samples))
    rows = [p for p in prompts for _ in range(samples)]
    replies = engine.generate_all(rows, max_new_tokens, temperature=temperature, seed=seed)
    # The stop token ends a reply but says nothing about its content: leave it out of n-grams.
    texts = [r[:-1] if r and r[-1] in engine.eos_ids else r for r in replies]
    entropies = []
    with torch.no_grad():
        for lo in range(0, len(rows), 32):
            ro = Rollouts(rows[lo : lo + 32], replies[lo : lo + 32], [], 0.0)
            packed = ro.pack(tok, tok.pad_id, next(model.parameters()).device)
            _, ent = token_logprobs(model, packed["idx"], packed["targets"])
            entropies.append((float(masked_mean(ent, packed["mask"])), float(packed["mask"].sum())))
    total = sum(w for _, w in entropies)
    groups = [texts[i : i + samples] for i in range(0, len(texts), samples)]
    return {
        "entropy": sum(e * w for e, w in entropies) / max(total, 1.0),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "distinct_2_within": statistics.fmean(distinct_n(g, 2) for g in groups),
        "identical_frac": statistics.fmean(float(all(t == g[0] for t in g)) for g in groups),
        "length": statistics.fmean(map(len, texts)),
    }

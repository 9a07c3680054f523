"""GRPO: group-relative advantages from a verifiable reward, no critic (DeepSeekMath).

For each prompt, G replies are sampled; each is scored by the task's own verifier
(`task.reward(item, completion)`: the arithmetic result, the right speaker). A reply's advantage
is its reward standardised within its group, A_i = (r_i - mean(r)) / (std(r) + eps), and every
token of the reply shares it. A group whose replies all score the same teaches nothing (A = 0),
so by default its rows are left out of the update (DAPO's dynamic sampling, without the
re-sampling): the forward and backward passes go to the groups that carry signal. With a KL
penalty this also drops that penalty on the flat groups' replies; `train_flat_groups` keeps them.

The loss is the token-level clipped surrogate (every reply token weighs the same across the batch,
as in DAPO, so long replies are not diluted per sequence), plus an optional KL penalty to the
frozen reference with the k3 estimator (always >= 0), as DeepSeekMath adds it to the loss rather
than to the reward:

    loss = mean_tokens[ max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)) + beta * k3 ]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gptlab.algos.ppo import kl_per_token
from gptlab.algos.rollout import (
    OnPolicyBatches,
    PromptItem,
    generate,
    masked_mean,
    pick_prompts,
    reply_messages,
    stats_metrics,
    token_logprobs,
)

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike


@dataclass
class GRPOConfig:
    prompts_per_iter: int = 8  # distinct prompts per iteration
    group_size: int = 8  # G: replies sampled per prompt
    minibatch: int = 32  # rows per optimizer step
    epochs: int = 1  # passes over each rollout batch (1: purely on-policy, ratio = 1)
    max_new_tokens: int = 48  # reply budget
    temperature: float = 1.0  # sampling temperature (diversity inside a group is the signal)
    top_k: int | None = None  # sample among the k likeliest tokens (None: all)
    kl_coef: float = 0.0  # beta of the k3 penalty to the reference (0: KL only logged)
    clip: float = 0.2  # ratio clip
    eps: float = 1e-4  # added to the group's std
    seed: int = 1337  # prompt order and sampling seeds
    train_flat_groups: bool = False  # also update on groups whose replies all scored the same (A = 0)
    missing_eos_penalty: float | None = None  # subtract from the reward of replies cut by the budget


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(n_groups, G) rewards -> (r - group mean) / (group std + eps); each group sums to zero.

    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])).tolist()[1]
    [0.0, 0.0, 0.0, 0.0]
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True) if rewards.size(1) > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + eps)


def grpo_loss(
    model: nn.Module, mb: dict[str, Any], clip: float = 0.2, kl_coef: float = 0.0
) -> tuple[torch.Tensor, dict[str, Any]]:
    logp, _ = token_logprobs(model, mb["idx"], mb["targets"], with_entropy=False)
    m = mb["mask"]
    adv = mb["adv"].unsqueeze(1)  # one advantage per reply, shared by its tokens
    ratio = torch.exp(logp - mb["old_logp"])
    pg1, pg2 = -adv * ratio, -adv * ratio.clamp(1.0 - clip, 1.0 + clip)
    per_token = torch.maximum(pg1, pg2)
    kl = kl_per_token(logp, mb["ref_logp"], "k3")
    loss = masked_mean(per_token + kl_coef * kl, m) if kl_coef else masked_mean(per_token, m)
    with torch.no_grad():
        metrics = {
            "pg_loss": masked_mean(per_token, m),
            "clipfrac": masked_mean((pg2 > pg1).float(), m),
            "kl_k3": masked_mean(kl, m),
            "tokens": mb.get("tokens", 0),
        }
    metrics.update(stats_metrics(mb["stats"], logp.device))
    return loss, metrics


class GRPOBatches(OnPolicyBatches):
    """G replies per prompt, verified, standardised per group, served as minibatches."""

    def __init__(self, policy: nn.Module, ref: nn.Module, engine: Engine, tok: TokenizerLike, pool: list[PromptItem],
                 cfg: GRPOConfig, pad_id: int, autocast: Callable[[], Any]):
        super().__init__(cfg.prompts_per_iter * cfg.group_size, cfg.minibatch, cfg.epochs, cfg.seed)
        if any(p.task is None for p in pool):
            raise ValueError("GRPO needs prompts with a verifier (task prompts)")
        self.policy, self.ref, self.engine, self.tok, self.pool = policy, ref, engine, tok, pool
        self.cfg, self.pad_id, self.autocast = cfg, pad_id, autocast

    @torch.no_grad()
    def collect(self, iteration: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        c = self.cfg
        picked = [self.pool[i] for i in pick_prompts(len(self.pool), c.prompts_per_iter, c.seed, iteration)]
        prompts = [p for p in picked for _ in range(c.group_size)]  # G copies in a row: one group
        with self.autocast():
            ro = generate(self.engine, [p.ids for p in prompts], c.max_new_tokens, c.temperature, c.top_k,
                          seed=c.seed * 7919 + iteration * 100_003)
        rewards = torch.tensor([p.reward(reply_messages(self.tok, r)[0]) for p, r in zip(prompts, ro.replies)])
        rewards -= ro.eos_penalty(c.missing_eos_penalty)  # a right answer that never ends its turn is not a good reply
        groups = rewards.view(c.prompts_per_iter, c.group_size)
        adv = group_advantages(groups, c.eps).view(-1)
        device = next(self.policy.parameters()).device
        rows = ro.pack(self.tok, self.pad_id, device)
        rows["adv"] = adv.to(device)
        keep = self.informative_rows(groups)
        if keep is not None:
            rows = {k: v[keep.to(device)] for k, v in rows.items()}
        with self.autocast():
            old_logp, entropy = token_logprobs(self.policy, rows["idx"], rows["targets"])
            ref_logp, _ = token_logprobs(self.ref, rows["idx"], rows["targets"], with_entropy=False)
        m = rows["mask"]
        rows.update(old_logp=old_logp.float(), ref_logp=ref_logp.float())
        kl_seq = (kl_per_token(old_logp, ref_logp, "k1") * m).sum(1)
        stats = {
            "reward": float(rewards.mean()),
            "accuracy": float((rewards > 0.5).float().mean()),
            "kl": float(kl_seq.mean()),
            "entropy": float(masked_mean(entropy, m)),
            "response_len": ro.tokens / len(prompts),
            "stopped_frac": sum(ro.stopped) / len(prompts),
            "gen_tok_per_s": ro.tokens_per_s,
            "solved_groups": float((groups.max(1).values > 0.5).float().mean()),
            "zero_std_groups": float((groups.std(1) == 0).float().mean()),
            "trained_rows": int(m.size(0)),
        }
        return rows, stats

    def informative_rows(self, groups: torch.Tensor) -> torch.Tensor | None:
        """Indices of the rows in groups whose rewards differ, or None to train on every row:
        when asked to, or when too few rows would be left to fill each of the iteration's
        optimizer steps (the step count per iteration is fixed, so a resumed run lines up)."""
        if self.cfg.train_flat_groups:
            return None
        live = (groups.std(1) > 0).repeat_interleave(groups.size(1))
        if int(live.sum()) < self.steps_per_iteration // self.epochs:
            return None
        return live.nonzero().view(-1)

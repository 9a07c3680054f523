"""PPO against a reward model, with a frozen reference and a per-token KL penalty (InstructGPT).

The return of a reply s to prompt x is R(s) = RM(x, s) - beta * log(pi_RL(s) / pi_SFT(s)), spread
over tokens as in Ziegler et al. / InstructGPT: every reply token t gets -beta * kl_t, and the last
one also gets the reward model's score (read at `<|reward|>` after `render_for_reward`).
kl_t is k1 = log pi(t) - log pi_ref(t) (unbiased; its sum is the sequence log-ratio) or k3 =
exp(-k1) + k1 - 1 (always >= 0, lower variance; Schulman's "approximating KL"). With
`kl_target`, beta adapts (Ziegler et al.): beta *= 1 + clip(KL / target - 1, +-0.2) * n / horizon.

The critic is a `ScalarHeadModel` (its own trunk, initialised from the reward model or the SFT
trunk) reading a value at every position; advantages come from GAE (gamma = 1, lambda = 0.95)
and are whitened over the batch's reply tokens. The loss is the clipped policy surrogate plus
vf_coef times the clipped value loss, for a few epochs of minibatches per rollout batch.

Policy and critic train as one `ActorCritic` module through the one loop; its checkpoint holds
both (plus the optimizer), and the policy alone is saved as a plain GPT at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gptlab.algos.rollout import (
    OnPolicyBatches,
    PromptItem,
    generate,
    masked_mean,
    masked_whiten,
    pick_prompts,
    reply_messages,
    stats_metrics,
    token_logprobs,
)
from gptlab.model.heads import ScalarHeadModel, keep_end

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike

RewardFn = Callable[[list[PromptItem], list[list[int]]], list[float]]


@dataclass
class PPOConfig:
    """PPO's knobs (defaults: InstructGPT / TRL's PPO, scaled down for tiny models); the
    `gptlab rl ppo` command fills them from its flags."""

    prompts_per_iter: int = 16  # rollouts per iteration (one reply per prompt)
    minibatch: int = 8  # rows per optimizer step
    epochs: int = 2  # passes over each rollout batch
    max_new_tokens: int = 48  # reply budget
    temperature: float = 1.0  # sampling temperature of the rollouts
    top_k: int | None = None  # sample among the k likeliest tokens (None: all)
    kl_coef: float = 0.05  # beta: weight of the per-token KL penalty in the reward
    kl_estimator: str = "k1"  # 'k1' (log-ratio) or 'k3' (exp(-k1) + k1 - 1)
    kl_target: float | None = None  # adaptive beta toward this KL per reply (None: fixed beta)
    kl_horizon: int = 10000  # adaptive controller's horizon, in rollouts
    clip: float = 0.2  # policy ratio clip
    value_clip: float = 0.2  # value prediction clip around the old values
    vf_coef: float = 0.1  # value loss weight
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    missing_eos_penalty: float | None = None  # subtract from the score of replies cut by the budget
    seed: int = 1337  # prompt order and sampling seeds


class ActorCritic(nn.Module):
    """The policy (a GPT) and the critic (a ScalarHeadModel) trained together in one loop.

    forward(idx, targets) -> (log pi per position, entropy per position, values per position).
    Its state dict leaves out the critic's unused LM head and a tied policy head (safetensors
    refuses two names for one tensor); loading puts them back.
    """

    def __init__(self, policy: nn.Module, value: ScalarHeadModel):
        super().__init__()
        self.policy, self.value = policy, value

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        logp, entropy = token_logprobs(self.policy, idx, targets)
        return logp, entropy, self.value(idx)

    def _derived(self) -> dict[str, torch.Tensor]:
        out = {"value.trunk.lm_head.weight": self.value.trunk.lm_head.weight}
        if self.policy.config.tie_embeddings:
            out["policy.lm_head.weight"] = self.policy.lm_head.weight
        return out

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        sd = super().state_dict(*args, **kwargs)
        for name in self._derived():
            sd.pop(kwargs.get("prefix", "") + name, None)
        return sd

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):  # type: ignore[override]
        state = dict(state_dict)
        for name, t in self._derived().items():
            state.setdefault(name, t.detach())
        return super().load_state_dict(state, strict=strict, assign=assign)


# ---------------------------------------------------------------------------- math


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate from the sampled tokens' log-probs under the policy and the reference.

    >>> kl_per_token(torch.tensor([-1.0]), torch.tensor([-1.0]), "k3")
    tensor([0.])
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.exp(-log_ratio) + log_ratio - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r} (k1 or k3)")


def gae(
    rewards: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's reply positions; (advantages, returns).

    rewards, values, valid: (B, T); `valid` marks reply positions (the episode); the value after
    the last one is 0 (the episode ends). With lam = 1 and gamma = 1 the advantage is the
    return-to-go minus the value:

    >>> adv, ret = gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(1, 3), torch.ones(1, 3), lam=1.0)
    >>> adv.tolist(), ret.tolist()
    ([[1.0, 1.0, 1.0]], [[1.0, 1.0, 1.0]])
    """
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    running = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    valid = valid.to(rewards.dtype)
    for t in reversed(range(T)):
        nxt_valid = valid[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        nxt_value = values[:, t + 1] * nxt_valid if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * nxt_value - values[:, t]
        running = delta + gamma * lam * nxt_valid * running
        adv[:, t] = running
    adv = adv * valid
    return adv, (adv + values) * valid


def ppo_loss(
    model: nn.Module, mb: dict[str, Any], clip: float = 0.2, value_clip: float = 0.2, vf_coef: float = 0.1
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clipped surrogate + vf_coef * clipped value loss, averaged over the minibatch's reply tokens."""
    logp, _, values = model(mb["idx"], mb["targets"])
    m = mb["mask"]
    ratio = torch.exp(logp - mb["old_logp"])
    pg1 = -mb["adv"] * ratio
    pg2 = -mb["adv"] * ratio.clamp(1.0 - clip, 1.0 + clip)
    pg_loss = masked_mean(torch.maximum(pg1, pg2), m)
    v_clipped = mb["old_values"] + (values - mb["old_values"]).clamp(-value_clip, value_clip)
    vf_loss = 0.5 * masked_mean(torch.maximum((values - mb["returns"]) ** 2, (v_clipped - mb["returns"]) ** 2), m)
    with torch.no_grad():
        metrics = {
            "pg_loss": pg_loss.detach(),
            "vf_loss": vf_loss.detach(),
            "clipfrac": masked_mean((pg2 > pg1).float(), m),
            "approx_kl_old": masked_mean(0.5 * (logp - mb["old_logp"]) ** 2, m),
            "tokens": mb.get("tokens", 0),
        }
    metrics.update(stats_metrics(mb["stats"], logp.device))
    return pg_loss + vf_coef * vf_loss, metrics


# ---------------------------------------------------------------------------- reward model


@torch.no_grad()
def rm_scores(
    rm: ScalarHeadModel, tok: TokenizerLike, convs: list[list[dict]], pad_id: int, batch: int = 32
) -> list[float]:
    """The reward model's score of each full conversation (read at `<|reward|>`).

    Too long for the RM's context: keep BOS and the end (the reply and `<|reward|>`), as the
    reward stage does in training.
    """
    limit = rm.max_tokens
    device = next(rm.parameters()).device
    seqs = []
    for c in convs:
        ids = tok.render_for_reward(c)
        seqs.append(keep_end(ids, limit))
    out: list[float] = []
    for lo in range(0, len(seqs), batch):
        part = seqs[lo : lo + batch]
        width = max(map(len, part))
        idx = torch.full((len(part), width), pad_id, dtype=torch.long)
        for b, s in enumerate(part):
            idx[b, : len(s)] = torch.tensor(s)
        last = torch.tensor([len(s) - 1 for s in part])
        out += rm.score_at(idx.to(device), last.to(device)).float().tolist()
    return out


def make_rm_reward(rm: ScalarHeadModel, tok: TokenizerLike, pad_id: int) -> RewardFn:
    """(prompts, reply ids) -> RM scores of prompt + parsed reply."""
    def reward(prompts: list[PromptItem], replies: list[list[int]]) -> list[float]:
        convs = [p.messages + [{"role": "assistant", "content": reply_messages(tok, r)[1]}]
                 for p, r in zip(prompts, replies)]
        return rm_scores(rm, tok, convs, pad_id)

    return reward


# ---------------------------------------------------------------------------- rollouts


class PPOBatches(OnPolicyBatches):
    """Sample replies, score them, and turn them into PPO minibatches (see OnPolicyBatches)."""

    def __init__(self, ac: ActorCritic, ref: nn.Module, engine: Engine, tok: TokenizerLike, pool: list[PromptItem],
                 reward_fn: RewardFn, cfg: PPOConfig, pad_id: int, autocast: Callable[[], Any]):
        super().__init__(cfg.prompts_per_iter, cfg.minibatch, cfg.epochs, cfg.seed)
        self.ac, self.ref, self.engine, self.tok, self.pool = ac, ref, engine, tok, pool
        self.reward_fn, self.cfg, self.pad_id, self.autocast = reward_fn, cfg, pad_id, autocast
        self.kl_coef = cfg.kl_coef

    @torch.no_grad()
    def collect(self, iteration: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        c = self.cfg
        prompts = [self.pool[i] for i in pick_prompts(len(self.pool), c.prompts_per_iter, c.seed, iteration)]
        with self.autocast():
            ro = generate(self.engine, [p.ids for p in prompts], c.max_new_tokens, c.temperature, c.top_k,
                          seed=c.seed * 7919 + iteration * 100_003)
        scores = torch.tensor(self.reward_fn(prompts, ro.replies), dtype=torch.float32)
        scores -= ro.eos_penalty(c.missing_eos_penalty)
        device = next(self.ac.parameters()).device
        rows = ro.pack(self.tok, self.pad_id, device)
        with self.autocast():
            old_logp, entropy, old_values = self.ac(rows["idx"], rows["targets"])
            ref_logp, _ = token_logprobs(self.ref, rows["idx"], rows["targets"], with_entropy=False)
        m, valid = rows["mask"], (rows["targets"] >= 0).float()
        kl = kl_per_token(old_logp, ref_logp, c.kl_estimator) * m
        rewards = -self.kl_coef * kl
        rewards[torch.arange(len(prompts), device=device), rows["last"]] += scores.to(device)
        old_values = old_values.float() * valid
        adv, returns = gae(rewards, old_values, valid, c.gamma, c.lam)
        rows.update(old_logp=old_logp.float(), old_values=old_values, returns=returns, adv=masked_whiten(adv, m))
        kl_seq = kl.sum(1)  # the reply's KL estimate: sum of per-token terms
        stats = {
            "reward": float(scores.mean()),  # the reward model's score alone
            "total_reward": float(scores.mean() - self.kl_coef * kl_seq.mean().cpu()),
            "kl": float(kl_seq.mean()),
            "kl_coef": self.kl_coef,
            "entropy": float(masked_mean(entropy, m)),
            "response_len": ro.tokens / len(prompts),
            "stopped_frac": sum(ro.stopped) / len(prompts),
            "gen_tok_per_s": ro.tokens_per_s,
            "value_mean": float(masked_mean(old_values, m)),
        }
        if c.kl_target is not None:  # Ziegler et al.'s proportional controller on beta
            err = max(-0.2, min(0.2, stats["kl"] / c.kl_target - 1.0))
            self.kl_coef *= 1.0 + err * len(prompts) / c.kl_horizon
        return rows, stats

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "kl_coef": self.kl_coef}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.kl_coef = float(state.get("kl_coef", self.kl_coef))

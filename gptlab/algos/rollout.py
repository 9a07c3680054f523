"""Rollouts for on-policy RL (PPO, GRPO): prompts -> sampled replies -> padded tensors + masks.

Generation dominates RL's time, so replies are sampled in batches through the KV-cache `Engine`
(one batched forward per new token), never one sequence at a time. The rest is bookkeeping that
every algorithm shares:

- `Rollouts.pack` lays out `[prompt | reply | pad]` rows, right-padded, with `targets[b, t]` =
  the token at t+1 (-1 elsewhere) and `mask[b, t]` = 1 where the policy *chose* token t+1. The
  tool-result span (`<|tool_result|> ... <|tool_result_end|>`) was forced in by the engine, not
  chosen, so it is in the reply but not in the mask (the same rule as the SFT loss mask).
- `token_logprobs(model, idx, targets)` gives log pi(token) and the policy's entropy per position.
- `masked_mean` / `masked_whiten` reduce over the action positions only.

    >>> masked_mean(torch.tensor([[1.0, 5.0], [3.0, 0.0]]), torch.tensor([[1, 0], [1, 0]]))
    tensor(2.)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from gptlab.tasks import TASKS, get_task
from gptlab.tasks.base import Item, Task, reply_text

if TYPE_CHECKING:
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.protocol import TokenizerLike


# ---------------------------------------------------------------------------- reductions


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is 1 (all of it, or along `dim`); 0 where the mask is empty."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (PPO's whitened advantages); 0 outside the mask."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask.to(x.dtype)


def token_logprobs(
    model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor, with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(targets[b, t] | idx[b, :t+1]) per position (B, T), 0 where targets is -1, and the
    policy's entropy there (B, T; no gradient: it is a diagnostic, not a loss term).

    The head and the vocabulary-wide log-softmax run on the target positions alone (a reply is
    a fraction of its row; the prompt and the padding need no logits), in fp32 whatever the
    autocast. A model without `hidden_states` and `lm_head` is called for full logits (B, T, V).
    """
    keep = targets >= 0
    logits = _target_logits(model, idx, keep).float()
    logp_all = F.log_softmax(logits, dim=-1)
    picked = logp_all.gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    logp = picked.new_zeros(targets.shape).masked_scatter(keep, picked)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            ent = -(logp_all.exp() * logp_all).sum(-1)
            entropy = ent.new_zeros(targets.shape).masked_scatter(keep, ent)
    return logp, entropy


def _target_logits(model: torch.nn.Module, idx: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Logits (N, V) at the N positions where `keep` is true, in row-major order."""
    gpt = getattr(model, "inner", model)  # a LoRA run's adapter-only view wraps the model
    if hasattr(gpt, "hidden_states") and hasattr(gpt, "lm_head"):
        return gpt.lm_head(gpt.hidden_states(idx)[keep])
    return model(idx)[keep]


# ---------------------------------------------------------------------------- masks


def forced_mask(tok: TokenizerLike, reply: list[int]) -> list[int]:
    """1 for reply tokens the policy chose, 0 for the engine-forced tool-result span.

        reply: x <|tool_call|> c <|tool_call_end|> <|tool_result|> 5 <|tool_result_end|> y <|end|>
        mask:  1       1       1        1                0         0         0           1    1
    """
    start, end = tok.token_id("<|tool_result|>"), tok.token_id("<|tool_result_end|>")
    out, inside = [], False
    for t in reply:
        if t == start:
            inside = True
        out.append(0 if inside else 1)
        if t == end:
            inside = False
    return out


# ---------------------------------------------------------------------------- rollouts


@dataclass
class Rollouts:
    """Sampled replies to prompts (token ids), with what generation cost."""

    prompts: list[list[int]]
    replies: list[list[int]]  # new ids per prompt, ending with the stop id when the reply stopped
    stopped: list[bool]  # reply ended with an end-of-turn id (not cut by the token budget)
    seconds: float  # wall time of generation

    @property
    def tokens(self) -> int:
        return sum(map(len, self.replies))

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    def eos_penalty(self, penalty: float | None) -> torch.Tensor:
        """(B,) float: `penalty` for each reply cut by the budget (it never ended its turn), else 0;
        all zeros for None. PPO and GRPO subtract it from their scores."""
        cut = (~torch.tensor(self.stopped, dtype=torch.bool)).float()
        return cut * (penalty or 0.0)

    def pack(self, tok: TokenizerLike, pad_id: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Right-padded tensors: idx (B, T), targets (B, T; -1 off the reply), mask (B, T; 1 on
        chosen reply tokens), last (B,; the position whose target is the reply's last token)."""
        rows = [p + r for p, r in zip(self.prompts, self.replies)]
        width = max(map(len, rows))
        B = len(rows)
        idx = torch.full((B, width), pad_id, dtype=torch.long)
        targets = torch.full((B, width), -1, dtype=torch.long)
        mask = torch.zeros((B, width), dtype=torch.float32)
        last = torch.zeros(B, dtype=torch.long)
        for b, (p, r) in enumerate(zip(self.prompts, self.replies)):
            seq = p + r
            idx[b, : len(seq)] = torch.tensor(seq)
            if not r:
                continue
            # Position t predicts token t+1: the reply's tokens are predicted at len(p)-1 ...
            lo = len(p) - 1
            targets[b, lo : lo + len(r)] = torch.tensor(r)
            mask[b, lo : lo + len(r)] = torch.tensor(forced_mask(tok, r), dtype=torch.float32)
            last[b] = lo + len(r) - 1
        to = lambda t: t.to(device)
        return {"idx": to(idx), "targets": to(targets), "mask": to(mask), "last": to(last)}


def generate(
    engine: Engine,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Rollouts:
    """Sample one reply per prompt through the engine's batched KV-cache decoding (timed)."""
    t0 = time.perf_counter()
    replies = engine.generate_all(
        prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed
    )
    seconds = time.perf_counter() - t0
    stopped = [bool(r) and r[-1] in engine.eos_ids for r in replies]
    return Rollouts([list(p) for p in prompts], replies, stopped, seconds)


def reply_messages(tok: TokenizerLike, reply: list[int]) -> tuple[str, Any]:
    """Generated ids -> (reply text with tool results, assistant content for the renderer)."""
    parts = tok.parse_assistant(reply)
    if all(p["type"] == "text" for p in parts):
        text = "".join(p["text"] for p in parts)
        return text, text
    return reply_text(parts), parts


# ---------------------------------------------------------------------------- prompt pools


@dataclass
class PromptItem:
    """One RL prompt: the messages, their ids, and (for verifiable tasks) the item and its task."""

    messages: list[dict]
    ids: list[int]
    task: Task | None = None
    item: Item | None = None

    def reward(self, completion: str) -> float:
        assert self.task is not None and self.item is not None, "no verifier for this prompt"
        return float(self.task.reward(self.item, completion))


def task_prompts(tok: TokenizerLike, names: list[str], split: str, n: int | None, max_prompt: int,
                 seed: int = 0) -> tuple[list[PromptItem], int]:
    """Prompts of each task's `split` (at most n per task) that leave room for a reply; (pool, dropped)."""
    pool, dropped = [], 0
    for name in names:
        kw: dict[str, Any] = {"seed": seed}
        if TASKS[name].generated and n is not None:
            kw["size"] = n
        task = get_task(name, split, **kw)
        for i in range(min(len(task), n) if n is not None else len(task)):
            item = task.example(i)
            msgs = task.prompt(item)
            ids = tok.render_prompt(msgs)
            if len(ids) > max_prompt:
                dropped += 1
                continue
            pool.append(PromptItem(msgs, ids, task, item) if task.scorable else PromptItem(msgs, ids))
    return pool, dropped


def file_prompts(tok: TokenizerLike, prompts: list[list[dict]], max_prompt: int) -> tuple[list[PromptItem], int]:
    """Message lists (e.g. from a prompts file) -> PromptItems without a verifier; (pool, dropped)."""
    pool, dropped = [], 0
    for msgs in prompts:
        ids = tok.render_prompt(msgs)
        if len(ids) > max_prompt:
            dropped += 1
            continue
        pool.append(PromptItem(msgs, ids))
    return pool, dropped


def pick_prompts(pool_size: int, n: int, seed: int, iteration: int) -> list[int]:
    """The prompt indices of rollout iteration `iteration`: a function of (seed, iteration) only,
    so a resumed run draws the same prompts an uninterrupted one would.

    >>> pick_prompts(10, 3, seed=0, iteration=5) == pick_prompts(10, 3, seed=0, iteration=5)
    True
    """
    rng = random.Random(f"rl-prompts:{seed}:{iteration}")
    if n <= pool_size:
        return rng.sample(range(pool_size), n)
    return [rng.randrange(pool_size) for _ in range(n)]


# ---------------------------------------------------------------------------- on-policy batches


class OnPolicyBatches:
    """Endless minibatches for the one training loop (`gptlab.train.loop.Trainer`), on-policy.

    Every `steps_per_iteration` batches it samples a fresh rollout batch with the *current*
    policy (`collect(iteration)`, written by PPO / GRPO), then serves it as `epochs` shuffled
    passes of `minibatch` rows. The Trainer sees an ordinary iterator; its checkpoint stores
    `state_dict()` (the iteration counter plus what a subclass adds, e.g. the adaptive KL
    coefficient), so a run resumes at a rollout-iteration boundary. Prompts and sampling seeds
    are functions of (seed, iteration), so a resumed run draws the same rollouts as an
    uninterrupted one. A checkpoint taken mid-iteration (the end of a time budget) drops the
    rest of that iteration's minibatches on resume: the next iteration starts afresh.
    """

    def __init__(self, rollout_rows: int, minibatch: int, epochs: int, seed: int):
        if minibatch < 1 or epochs < 1 or rollout_rows < 1:
            raise ValueError("rollout rows, minibatch and epochs must be at least 1")
        self.rollout_rows, self.minibatch, self.epochs, self.seed = rollout_rows, minibatch, epochs, seed
        self.iteration = 0
        self.queue: list[dict[str, Any]] = []
        self.last_stats: dict[str, float] = {}

    @property
    def steps_per_iteration(self) -> int:
        return self.epochs * -(-self.rollout_rows // self.minibatch)

    def collect(self, iteration: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Rows of one rollout batch (every tensor (N, ...)) and its logged statistics."""
        raise NotImplementedError

    def __iter__(self) -> OnPolicyBatches:
        return self

    def __next__(self) -> dict[str, Any]:
        if not self.queue:
            rows, stats = self.collect(self.iteration)
            self.last_stats = stats
            n = next(iter(rows.values())).size(0)
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.iteration) % 2**31)
            per_epoch = self.steps_per_iteration // self.epochs
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=g)
                # A batch that kept fewer rows (GRPO leaves out flat groups) is cut into as many
                # (smaller) minibatches as a full one, so every iteration takes the same steps.
                parts = ([order[lo : lo + self.minibatch] for lo in range(0, n, self.minibatch)]
                         if n >= self.rollout_rows else list(order.tensor_split(per_epoch)))
                for part in parts:
                    pick = part.to(next(iter(rows.values())).device)
                    mb = {k: v[pick] for k, v in rows.items()}
                    if "last" in mb:  # drop padding columns past the longest row of the minibatch
                        width = int(mb["last"].max()) + 2
                        mb = {k: v[:, :width] if v.dim() == 2 else v for k, v in mb.items()}
                    mb["stats"] = stats
                    mb["tokens"] = int(mb["mask"].sum()) if "mask" in mb else 0
                    self.queue.append(mb)
            self.iteration += 1
        return self.queue.pop(0)

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.queue.clear()


def stats_metrics(stats: dict[str, float], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Rollout statistics as tensors, so the loop averages and logs them with the loss."""
    return {k: torch.tensor(float(v), device=device) for k, v in stats.items()}

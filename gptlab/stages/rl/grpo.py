"""`gptlab rl grpo`: GRPO on verifiable task rewards, group-relative advantages and no critic
(DeepSeekMath; the algorithm is gptlab.algos.grpo)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gptlab.algos.grpo import GRPOBatches, GRPOConfig, grpo_loss
from gptlab.commandline import parse
from gptlab.common import autocast_context, run_dir
from gptlab.errors import InputError
from gptlab.eval.heldout import make_heldout_eval
from gptlab.eval.heldout_stats import ITEMS
from gptlab.infer.loading import make_engine
from gptlab.stages.rl.common import (
    STALE,
    RolloutArgs,
    checkpoint_dir,
    describe,
    load_start,
    make_finish,
    max_prompt_len,
    prompt_pools,
    train_config,
)
from gptlab.train.distributed import DistInfo
from gptlab.train.stage import StageParts, run_stage

DEFAULT_ITERATIONS = 30


@dataclass
class GRPOArgs(RolloutArgs):
    """GRPO: G replies per prompt, each scored by its task's verifier, advantages standardised
    within the group; a token-level clipped surrogate plus a k3 KL term to the reference in the
    loss. --steps counts rollout iterations. Writes the policy, eval.json, heldout_items.jsonl,
    metrics.jsonl, rl.png and loss.png into --out (default runs/<run>/rl)."""

    steps: int | None = None  # the budget: rollout iterations, each --epochs passes of minibatches over --prompts-per-iter x --group-size replies (default 30 unless --time-budget)
    tasks: tuple[str, ...] = ("arithmetic",)  # prompts: tasks with a verifier; train split for RL, test split held out
    group_size: int = 8  # G: replies per prompt
    prompts_per_iter: int = 8  # distinct prompts per rollout iteration (each sampled G times)
    minibatch: int = 32  # rows per optimizer step
    epochs: int = 1  # passes over each rollout batch (1: purely on-policy)
    eval_samples: int = 2  # also score K replies per held-out prompt sampled as in the rollouts, besides the greedy one
    train_flat_groups: bool = False  # also update on groups whose replies all scored the same (advantage 0: only the KL term moves them); off: those rows cost no forward or backward pass
    missing_eos_penalty: float | None = None  # subtract from the reward of replies cut off by the budget (a verifier scores a cut reply's last number; without this GRPO can learn replies that never end)

    def check(self) -> None:
        super().check()
        if self.group_size < 2:
            raise InputError(None, "--group-size must be at least 2 (advantages are relative to the group)")


def algo_config(cfg: GRPOArgs) -> GRPOConfig:
    return GRPOConfig(
        prompts_per_iter=cfg.prompts_per_iter, group_size=cfg.group_size, minibatch=cfg.minibatch,
        epochs=cfg.epochs, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
        top_k=cfg.top_k, kl_coef=cfg.kl_coef, clip=cfg.clip, seed=cfg.seed,
        train_flat_groups=cfg.train_flat_groups, missing_eos_penalty=cfg.missing_eos_penalty,
    )


def build(cfg: GRPOArgs, out: Path, dist: DistInfo) -> StageParts:
    """The policy, GRPO rollout batches (verified, standardised per group), the loss, the held-out hook."""
    start = load_start(cfg, dist)
    train_pool, held = prompt_pools(cfg, start.tok, max_prompt_len(cfg, start), True)
    # No more slots than rows: a full cache takes the engine's no-gather path.
    rows = cfg.prompts_per_iter * cfg.group_size
    engine = make_engine(start.policy, start.tok, max_batch=min(cfg.max_batch, rows), autocast_dtype=start.dtype)
    batches = GRPOBatches(start.policy, start.ref, engine, start.tok, train_pool, algo_config(cfg), start.pad_id,
                          partial(autocast_context, start.device, start.dtype))
    loss_fn = partial(grpo_loss, clip=cfg.clip, kl_coef=cfg.kl_coef)
    evaluate = make_heldout_eval(engine, start.tok, held, cfg.max_new_tokens, None, out / ITEMS,
                                 cfg.eval_samples, cfg.temperature, cfg.top_k, cfg.seed)
    spi = batches.steps_per_iteration
    train = train_config(cfg, DEFAULT_ITERATIONS, spi, start.device)
    extra = {"from": str(start.init), "steps_per_iteration": spi}
    return StageParts(
        start.trainable(), batches, loss_fn, train, describe("grpo", cfg, start, spi), evaluate=evaluate,
        metadata={"algo": "grpo", "init": str(start.init), "params": start.policy.num_params()},
        stale=STALE, finish=make_finish("grpo", cfg, out, train, extra, spi,
                                         save=partial(start.save_policy, out) if start.lora else None),
    )


def run(cfg: GRPOArgs) -> int:
    out = Path(cfg.out or run_dir(cfg.run, "rl"))
    run_stage(cfg, "rl grpo", out, lambda dist, resuming: build(cfg, out, dist), checkpoint_dir=checkpoint_dir(cfg, out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(GRPOArgs, argv, "gptlab rl grpo"))

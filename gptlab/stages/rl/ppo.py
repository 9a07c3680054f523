"""`gptlab rl ppo`: PPO against the reward model, a per-token KL penalty to the SFT model, a critic
and GAE (InstructGPT; the algorithm is gptlab.algos.ppo).

Policy and critic train as one `ActorCritic` module through the one loop; its resumable
checkpoint (policy + critic + optimizer) lives in <out>/checkpoint/, and the policy alone is
saved as a plain GPT in <out> at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from torch import nn

from gptlab.algos.ppo import ActorCritic, PPOBatches, PPOConfig, make_rm_reward, ppo_loss
from gptlab.algos.reward_model import load_reward_model
from gptlab.commandline import parse
from gptlab.common import autocast_context, run_dir
from gptlab.eval.heldout import make_heldout_eval
from gptlab.eval.heldout_stats import ITEMS
from gptlab.infer.loading import make_engine
from gptlab.model.heads import ScalarHeadModel
from gptlab.model.io import load_model
from gptlab.stages.rl.common import (
    STALE,
    RolloutArgs,
    Start,
    describe,
    frozen,
    load_start,
    make_finish,
    max_prompt_len,
    prompt_pools,
    train_config,
)
from gptlab.train import checkpoint
from gptlab.train.distributed import DistInfo
from gptlab.train.stage import StageParts, run_stage

DEFAULT_ITERATIONS = 30


@dataclass
class PPOArgs(RolloutArgs):
    """PPO against a reward model: reward = RM score - beta * KL to the reference, spread over the
    reply's tokens; a critic reads a value at every position (GAE); a clipped surrogate and a
    clipped value loss, a few epochs of minibatches per rollout batch. --steps counts rollout
    iterations. Writes the policy, eval.json, heldout_items.jsonl, metrics.jsonl, rl.png and
    loss.png into --out (default runs/<run>/rl), the resumable checkpoint into <out>/checkpoint."""

    steps: int | None = None  # the budget: rollout iterations, each --epochs passes of minibatches over --prompts-per-iter replies (default 30 unless --time-budget)
    rm: Path | None = None  # reward model folder (default: runs/<run>/rm)
    tasks: tuple[str, ...] = ("arithmetic", "play_speaker")  # prompts: tasks whose train split feeds RL and whose test split is held out (any task: the reward model scores it)
    prompts: Path | None = None  # prompts file instead of --tasks (.txt one per line, or JSONL 'prompt'); the last 10% are held out
    kl_estimator: Literal["k1", "k3"] = "k1"  # per-token KL estimator
    kl_target: float | None = None  # adapt beta toward this KL per reply (None: a fixed beta)
    kl_horizon: int = 10000  # adaptive controller horizon, in rollouts
    value_init: Literal["rm", "sft"] = "rm"  # critic trunk from the reward model or the SFT model
    vf_coef: float = 0.1  # value loss weight
    value_clip: float = 0.2  # value clip around the old values
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    missing_eos_penalty: float | None = None  # subtract from the score of replies cut off by the budget


def load_critic(cfg: PPOArgs, rm_dir: Path, start: Start) -> ScalarHeadModel:
    """The value model: the reward model (trunk and head) or the SFT trunk, without dropout."""
    if cfg.value_init == "rm":
        critic = ScalarHeadModel(load_model(rm_dir, device=start.device))
        critic.load_head(rm_dir)
    else:
        critic = ScalarHeadModel(load_model(start.init, device=start.device))
    for layer in critic.trunk.layers:
        layer.dropout = nn.Identity()
    return critic.to(start.device)


def algo_config(cfg: PPOArgs) -> PPOConfig:
    return PPOConfig(
        prompts_per_iter=cfg.prompts_per_iter, minibatch=cfg.minibatch, epochs=cfg.epochs,
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
        kl_coef=cfg.kl_coef, kl_estimator=cfg.kl_estimator, kl_target=cfg.kl_target,
        kl_horizon=cfg.kl_horizon, clip=cfg.clip, value_clip=cfg.value_clip, vf_coef=cfg.vf_coef,
        gamma=cfg.gamma, lam=cfg.lam, missing_eos_penalty=cfg.missing_eos_penalty, seed=cfg.seed,
    )


def build(cfg: PPOArgs, out: Path, dist: DistInfo) -> StageParts:
    """Policy + critic as one module, PPO rollout batches, the clipped loss, the held-out hook."""
    start = load_start(cfg, dist)
    train_pool, held = prompt_pools(cfg, start.tok, max_prompt_len(cfg, start), False, cfg.prompts)
    # No more slots than rows: a full cache takes the engine's no-gather path.
    engine = make_engine(start.policy, start.tok, max_batch=min(cfg.max_batch, cfg.prompts_per_iter),
                         autocast_dtype=start.dtype)
    rm_dir = Path(cfg.rm or run_dir(cfg.run, "rm"))
    rm = frozen(load_reward_model(rm_dir, device=start.device))
    reward_fn = make_rm_reward(rm, start.tok, start.pad_id)
    model = ActorCritic(start.policy, load_critic(cfg, rm_dir, start))
    batches = PPOBatches(model, start.ref, engine, start.tok, train_pool, reward_fn, algo_config(cfg),
                         start.pad_id, partial(autocast_context, start.device, start.dtype))
    loss_fn = partial(ppo_loss, clip=cfg.clip, value_clip=cfg.value_clip, vf_coef=cfg.vf_coef)
    evaluate = make_heldout_eval(engine, start.tok, held, cfg.max_new_tokens, reward_fn, out / ITEMS,
                                 cfg.eval_samples, cfg.temperature, cfg.top_k, cfg.seed)
    spi = batches.steps_per_iteration
    train = train_config(cfg, DEFAULT_ITERATIONS, spi, start.device)
    extra = {"from": str(start.init), "rm": str(rm_dir), "steps_per_iteration": spi}
    finish = make_finish("ppo", cfg, out, train, extra, spi, save=partial(start.save_policy, out))
    return StageParts(
        model, batches, loss_fn, train, describe("ppo", cfg, start, spi), evaluate=evaluate,
        metadata={"algo": "ppo", "init": str(start.init), "params": start.policy.num_params()},
        stale=STALE, finish=finish,
    )


def run(cfg: PPOArgs) -> int:
    out = Path(cfg.out or run_dir(cfg.run, "rl"))
    run_stage(cfg, "rl ppo", out, lambda dist, resuming: build(cfg, out, dist), checkpoint_dir=out / checkpoint.SUBFOLDER)  # actor-critic, beside the plain policy
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(PPOArgs, argv, "gptlab rl ppo"))

"""What PPO, DPO and GRPO share: the RL options, the policy and its frozen reference, prompt
pools, the loop's settings counted in rollout iterations, and the records written at the end.

The policy starts from --from (default runs/<run>/sft) and the reference is a frozen copy (or
--ref). Dropout is switched off in both: PPO's ratio must be exactly 1 on its first pass.
Outputs in --out (default runs/<run>/rl): model.safetensors + config.json (the policy, a plain
GPT like SFT's), metrics.jsonl, rl.png, loss.png, run.yaml, eval.json (held-out reward and task
accuracy before and after, their paired gains with 95% intervals, rollout tokens/s) and
heldout_items.jsonl (each held-out evaluation, prompt by prompt).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptlab.algos.rollout import PromptItem, file_prompts, task_prompts
from gptlab.common import pick_autocast_dtype, print0, run_dir
from gptlab.errors import InputError
from gptlab.eval.heldout_stats import ITEMS
from gptlab.eval.prompts import read_prompts
from gptlab.infer.loading import load_for_inference
from gptlab.model import lora
from gptlab.model.io import save_model
from gptlab.options import FromPath
from gptlab.stages.rl.records import plot_rl, summary, write_eval
from gptlab.tasks import task_names
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.tokenizer.protocol import TokenizerLike
from gptlab.train import checkpoint
from gptlab.train.distributed import DistInfo
from gptlab.train.loop import TrainConfig, TrainResult
from gptlab.train.stage import LoopArgs

STALE = ("metrics.jsonl", "eval.json", "rl.png", "loss.png", ITEMS)  # a fresh run removes these
NEVER = 10**12  # "never" for the periodic hooks: they still run at step 0 and at the end


@dataclass
class RLArgs(LoopArgs):
    """Options every RL command has (and the loop's, with RL's defaults)."""

    from_: FromPath = None  # policy to start from (default: runs/<run>/sft)
    ref: Path | None = None  # frozen reference model (default: the --from model)
    tokenizer: Path | None = None  # tokenizer folder (default: the --from folder's sibling 'tokenizer')
    out: Path | None = None  # output folder (default: runs/<run>/rl)
    eval_prompts: int = 32  # held-out prompts per task (PPO, GRPO) or held-out pairs (DPO) for eval.json
    lr: float = 1e-5  # peak learning rate (policy and critic)
    min_lr_ratio: float = 1.0  # final LR as a fraction of the peak (1: constant LR)
    weight_decay: float = 0.0  # decoupled weight decay on matrices
    eval_every: int | None = None  # held-out eval every N iterations (PPO, GRPO) or steps (DPO) (None: before and after only)
    save_every: int | None = 5  # checkpoint every N iterations (PPO, GRPO) or steps (DPO), and at the end (None: at the end only)
    log_every: int = 1  # progress line + metrics.jsonl record every N iterations (PPO, GRPO) or steps (DPO)
    lora_rank: int | None = None  # train rank-r LoRA adapters on the policy's linear layers, not all its weights; the merged policy is saved (None: all weights)
    lora_alpha: float | None = None  # adapter scale numerator: update = alpha/r * B A (default: 2 * rank)

    def check(self) -> None:
        super().check()
        if self.lora_rank is not None and self.lora_rank < 1:
            raise InputError(None, "--lora-rank must be at least 1")


@dataclass
class RolloutArgs(RLArgs):
    """Options of the on-policy commands (PPO, GRPO): prompts, rollouts and the clipped ratio."""

    tasks: tuple[str, ...] = ("arithmetic",)  # prompts: tasks whose train split feeds RL and whose test split is held out
    train_prompts: int = 2000  # at most this many train prompts per task
    eval_samples: int = 0  # also score K replies per held-out prompt sampled as in the rollouts, besides the greedy one
    prompts_per_iter: int = 16  # prompts per rollout iteration
    minibatch: int = 8  # rows per optimizer step
    epochs: int = 2  # passes over each rollout batch
    max_new_tokens: int = 48  # reply budget in tokens
    temperature: float = 1.0  # rollout sampling temperature
    top_k: int | None = None  # rollouts sample among the k likeliest tokens (None: all)
    max_batch: int = 64  # sequences decoded at once by the engine
    clip: float = 0.2  # policy ratio clip epsilon
    kl_coef: float = 0.05  # beta: weight of the KL to the reference

    def check(self) -> None:
        super().check()
        if self.grad_accum != 1:
            raise InputError(None, "--grad-accum: an optimizer step is one minibatch here; set --minibatch")
        if self.eval_samples < 0:
            raise InputError(None, "--eval-samples must be 0 or more")
        at_least_one(self, ("prompts_per_iter", "minibatch", "epochs", "max_new_tokens", "max_batch"))


def at_least_one(cfg: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(cfg, name) < 1:
            raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")


# ---------------------------------------------------------------------------- models


def load_policy(folder: Path, tok: TokenizerLike, device: str) -> nn.Module:
    """A stage folder (full weights or LoRA adapter) as a GPT on `device`, without dropout."""
    model, _ = load_for_inference(folder, device=device, tokenizer=tok)
    model.requires_grad_(True)  # the policy trains (`frozen` turns this off again for the reference)
    for layer in model.layers:
        layer.dropout = nn.Identity()
    model.config = replace(model.config, dropout=0.0)
    return model


def frozen(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@dataclass
class Start:
    """What every RL command starts from: the tokenizer, the policy and its frozen reference."""

    init: Path  # the --from folder
    tok: TokenizerLike
    pad_id: int
    policy: nn.Module
    ref: nn.Module
    device: str
    dtype: torch.dtype | None  # autocast dtype of rollouts and of the loop
    lora: bool = False  # the policy's linear layers carry trainable adapters, all else frozen

    @property
    def max_seq_len(self) -> int:
        return self.policy.config.max_seq_len

    def trainable(self) -> nn.Module:
        """What the loop trains and checkpoints: the policy, or with LoRA its adapter-only view
        (a checkpoint of the adapters and their AdamW moments, not of the frozen weights)."""
        return lora.AdapterOnly(self.policy) if self.lora else self.policy

    def save_policy(self, out: Path) -> None:
        """The policy as plain full weights in `out` (adapters merged in), like a full run's."""
        if self.lora:
            lora.merge_lora(self.policy)
        save_model(out, self.policy)


def checkpoint_dir(cfg: RLArgs, out: Path) -> Path | None:
    """Where the loop keeps its resumable state: with LoRA, a subfolder (adapters + optimizer),
    since `out` receives the merged policy at the end; else `out` itself (None)."""
    return out / checkpoint.SUBFOLDER if cfg.lora_rank is not None else None


def load_start(cfg: RLArgs, dist: DistInfo) -> Start:
    """Tokenizer, policy (--from) and frozen reference (--ref, default the same weights)."""
    init = Path(cfg.from_ or run_dir(cfg.run, "sft"))
    tok_dir = cfg.tokenizer or init.parent / "tokenizer"
    if not Path(tok_dir).exists():
        raise InputError(tok_dir, "tokenizer folder not found (give --tokenizer)")
    if dist.enabled:
        raise InputError(None, "gptlab rl runs in one process (rollouts are not sharded across ranks)")
    tok = load_tokenizer(tok_dir)
    policy = load_policy(init, tok, dist.device)
    ref = frozen(load_policy(Path(cfg.ref or init), tok, dist.device))
    dtype = pick_autocast_dtype(dist.device, cfg.dtype)
    if cfg.lora_rank is not None:
        alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2.0 * cfg.lora_rank
        wrapped = lora.apply_lora(policy, "all", cfg.lora_rank, alpha)
        n_train = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        print0(f"lora: rank {cfg.lora_rank}, alpha {alpha:g}, {len(wrapped)} layers, "
               f"{n_train:,} trainable of {policy.num_params():,} params")
    return Start(init, tok, tok.pad_id, policy, ref, dist.device, dtype, lora=cfg.lora_rank is not None)


# ---------------------------------------------------------------------------- prompts


def prompt_pools(
    cfg: RolloutArgs, tok: TokenizerLike, max_prompt: int, scorable: bool, prompts_file: Path | None = None
) -> tuple[list[PromptItem], list[PromptItem]]:
    """(train pool, held-out pool) of PromptItems from a prompts file or --tasks."""
    if prompts_file is not None:
        pool, dropped = file_prompts(tok, read_prompts(prompts_file), max_prompt)
        n_eval = min(len(pool) // 10, cfg.eval_prompts)
        train, held = pool[: len(pool) - n_eval], pool[len(pool) - n_eval :]
    else:
        # PPO's reward is the reward model's, so its tasks need no verifier (chitchat); GRPO's do
        names = task_names(cfg.tasks, scorable=scorable)
        train, dropped = task_prompts(tok, names, "train", cfg.train_prompts, max_prompt, cfg.seed)
        held, _ = task_prompts(tok, names, "test", cfg.eval_prompts, max_prompt, cfg.seed)
    if not train:
        raise InputError(prompts_file, "no prompts fit the model's context with room for a reply")
    print0(f"prompts: {len(train):,} train, {len(held):,} held out ({dropped} too long, dropped)")
    return train, held


def max_prompt_len(cfg: RolloutArgs, start: Start) -> int:
    """The longest prompt that leaves room for a full reply in the policy's context."""
    max_prompt = start.max_seq_len - cfg.max_new_tokens - 1
    if max_prompt < 4:
        raise InputError(None, f"--max-new-tokens {cfg.max_new_tokens} leaves no room in the context ({start.max_seq_len})")
    return max_prompt


# ---------------------------------------------------------------------------- loop and records


def train_config(cfg: RLArgs, default_steps: int, steps_per_iter: int, device: str) -> TrainConfig:
    """The loop's settings with --steps, --eval-every, --save-every and --log-every counted in
    rollout iterations of `steps_per_iter` optimizer steps (1 for DPO)."""
    iters = cfg.steps if cfg.steps is not None else (None if cfg.time_budget else default_steps)
    return cfg.loop_config(
        None,
        max_steps=iters * steps_per_iter if iters is not None else None,
        device=device,
        log_every=steps_per_iter * cfg.log_every,
        eval_every=steps_per_iter * cfg.eval_every if cfg.eval_every else NEVER,
        save_every=steps_per_iter * cfg.save_every if cfg.save_every else None,
    )


def describe(algo: str, cfg: RLArgs, start: Start, steps_per_iter: int) -> str:
    return (f"rl {algo}: from {start.init} | lr {cfg.lr:g} | {steps_per_iter} optimizer steps per iteration | "
            f"device {start.device}")


def make_finish(
    algo: str, cfg: RLArgs, out: Path, train: TrainConfig, extra: dict[str, Any], steps_per_iter: int,
    save: Callable[[], None] | None = None,
) -> Callable[[TrainResult], str]:
    """The end of a run: `save` (PPO's plain policy), eval.json, rl.png; the summary's tail."""

    def finish(result: TrainResult) -> str:
        if save is not None:
            save()
        config = {k: v for k, v in asdict(train).items() if k in ("lr", "max_steps", "max_time", "seed")}
        extra.update(steps=result.step, iterations=result.step // steps_per_iter,
                     train_seconds=round(result.elapsed, 1), config=config)
        report = write_eval(out, algo, out / "metrics.jsonl", extra)
        plot_rl(out / "metrics.jsonl", out / "rl.png", f"rl {algo} ({cfg.run})")
        return summary(report)

    return finish

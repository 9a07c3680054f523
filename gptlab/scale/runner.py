"""One pretraining run for the scale commands, in-process, through `gptlab pretrain`'s own code.

`train(cfg, on_eval)` is `gptlab pretrain` (the same builder, the same `run_stage`, the same files
in cfg.out) plus one thing a sweep needs: each validation result goes to `on_eval(step, metrics)`
as soon as it exists, so a pruner can stop the run by raising. No subprocess, no parsing of
printed lines.

The evaluation steps come from the loop's contract (TrainConfig.eval_every: "every N steps, and at
0 and the end"), so the k-th evaluation of a fresh run is at min(k * eval_every, steps);
tests/test_sweep.py checks these steps against the run's metrics.jsonl.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from gptlab.common import run_dir
from gptlab.data.shards import ShardIndex
from gptlab.errors import InputError
from gptlab.model.gpt import GPT
from gptlab.scale.options import ScaleArgs
from gptlab.stages import pretrain
from gptlab.train.distributed import DistInfo
from gptlab.train.stage import StageParts, run_stage

EvalCallback = Callable[[int, dict[str, float]], None]


@dataclass
class RunResult:
    """What the scale commands keep of one finished run."""

    out: Path
    steps: int
    tokens: int  # training tokens seen: steps x batch x seq_len
    val_loss: float  # at the last evaluation (the end of training)
    metrics: dict[str, float] = field(default_factory=dict)  # the last evaluation's (val_loss, val_bpb)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val_loss) at each evaluation
    seconds: float = 0.0  # wall time, including evaluations and the checkpoint


def shards_of(args: ScaleArgs) -> Path:
    return Path(args.shards) if args.shards is not None else run_dir(args.run, "shards")


def pretrain_config(
    args: ScaleArgs, n_layer: int, n_embd: int, lr: float, steps: int, eval_every: int, out: Path
) -> pretrain.PretrainConfig:
    """The `gptlab pretrain` config of one run: the shared shape, this run's size, LR and budget."""
    if n_layer < 1 or n_embd < 1:
        raise InputError(None, f"a model needs at least 1 layer and width 1 (got {n_layer}x{n_embd})")
    return pretrain.PretrainConfig(
        run=args.run, device=args.device, shards=shards_of(args), tokenizer=args.tokenizer,
        out=Path(out), depth=n_layer, n_embd=n_embd, n_head=max(1, n_embd // args.head_dim),
        seq_len=args.seq_len, batch_size=args.batch_size, lr=lr,
        warmup=int(args.warmup_frac * steps), steps=steps, eval_every=eval_every,
        eval_tokens=args.eval_tokens, sample_every=None, save_every=None, log_every=eval_every,
        seed=args.seed, dtype=args.dtype,
    )


def model_size(cfg: pretrain.PretrainConfig) -> tuple[int, int]:
    """(all parameters, parameters without the input embedding table) of the run's model.

    The second is the N of the scaling law and of C = 6·N·D: the embedding table is a lookup
    (no FLOPs), the output head a real matmul. Built on the meta device: nothing is allocated.
    """
    vocab = ShardIndex.load(cfg.shards or run_dir(cfg.run, "shards")).vocab_size
    mcfg = pretrain.model_config(cfg, vocab)
    with torch.device("meta"):
        model = GPT(mcfg)
    return model.num_params(), model.num_params(exclude_embeddings=True)


def eval_steps(steps: int, every: int) -> Iterator[int]:
    """The steps a fresh run evaluates at: eval_steps(10, 4) -> 0, 4, 8, 10."""
    yield from range(0, steps + 1, every)
    if steps % every:
        yield steps


def train(cfg: pretrain.PretrainConfig, on_eval: EvalCallback | None = None) -> RunResult:
    """Pretrain from scratch into cfg.out; `on_eval` may raise to stop the run (e.g. pruning)."""
    if cfg.steps is None or cfg.eval_every is None or cfg.time_budget is not None:
        raise InputError(None, "scale runs stop on --steps and evaluate every N steps (no time budget)")
    shards = cfg.shards or run_dir(cfg.run, "shards")
    out = cfg.out or run_dir(cfg.run, "base")
    cfg = replace(cfg, resume=False)  # the step arithmetic below holds for fresh runs
    schedule = eval_steps(cfg.steps, cfg.eval_every)
    curve: list[tuple[int, float]] = []
    last: dict[str, float] = {}

    def build(dist: DistInfo, resuming: bool) -> StageParts:
        parts = pretrain.build(cfg, shards, out, dist, resuming)
        inner = parts.evaluate
        if inner is None:
            raise InputError(shards, "needs a 'val' split of at least one window (gptlab data tokenize)")

        def evaluate(model: torch.nn.Module) -> dict[str, float]:
            metrics = inner(model)
            step = next(schedule)
            curve.append((step, metrics["val_loss"]))
            last.update(metrics)
            if on_eval is not None:
                on_eval(step, metrics)
            return metrics

        return replace(parts, evaluate=evaluate)

    t0 = time.perf_counter()
    result = run_stage(cfg, "pretrain", out, build)
    if not curve or not math.isfinite(curve[-1][1]):
        raise RuntimeError(f"{out}: the run ended without a finite validation loss")
    return RunResult(
        out=Path(out), steps=result.step, tokens=result.step * cfg.batch_size * cfg.seq_len,
        val_loss=curve[-1][1], metrics=last, curve=curve, seconds=time.perf_counter() - t0,
    )

"""One way to run a training stage: a typed config plus a builder; `run_stage` does the rest.

A stage (pretrain, SFT, the reward model, PPO, DPO, GRPO) is
- a config dataclass that extends `LoopArgs` (the loop's knobs, spelled the same in every command)
  with its own fields, and
- a builder `build(cfg, dist, resuming) -> StageParts`: the model, the batches, the loss and the
  hooks, which is all that is particular to it.

`run_stage` does what every stage did by hand before: distributed setup, seeding, removing a
previous run's records, the resolved `run.yaml`, the tracker, run metadata, the one loop
(`Trainer.fit`), the loss plot and the summary line. Ordering matters for reproducibility: the
seed is set before the builder runs, so a model's init and the data order depend on `--seed` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from gptlab.commandline import to_dict, write_resolved
from gptlab.common import print0, run_metadata, seed_everything
from gptlab.errors import InputError
from gptlab.options import DeviceArgs, RunArgs
from gptlab.train import checkpoint as ckpt
from gptlab.train.distributed import DistInfo, cleanup, init_distributed
from gptlab.train.loop import EvalFn, LossFn, SampleFn, TrainConfig, Trainer, TrainResult
from gptlab.train.plots import plot_losses
from gptlab.train.tracker import build_tracker, read_metrics, truncate_metrics, truncate_samples


@dataclass
class LoopArgs(RunArgs, DeviceArgs):
    """Options of the one training loop; every training command has them, named alike."""

    out: Path | None = None  # output stage folder (default: the stage's folder under runs/<run>/)
    resume: bool = False  # continue the checkpoint in --out on the same trajectory (data, RNG, optimizer)
    steps: int | None = None  # optimizer steps to run, the budget (default: the stage's own)
    time_budget: float | None = None  # also stop after this many seconds of training (the LR schedule then follows time)
    lr: float = 3e-4  # peak learning rate
    warmup: int = 0  # linear LR warmup, optimizer steps
    schedule: Literal["cosine", "wsd"] = "cosine"  # LR shape after warmup (wsd: warmup-stable-decay)
    decay_frac: float = 0.2  # with --schedule wsd: the final fraction of training spent decaying
    min_lr_ratio: float = 0.1  # final LR as a fraction of the peak
    weight_decay: float = 0.1  # decoupled weight decay on matrices
    grad_clip: float | None = 1.0  # clip the gradient norm to this (None: off)
    grad_accum: int = 1  # micro-batches per optimizer step
    seed: int = 1337  # seeds the init, the data order and sampling
    eval_every: int | None = 50  # evaluate on held-out data every N steps, and at 0 and the end (None: off)
    save_every: int | None = 100  # checkpoint every N steps, and at the end (None: at the end only)
    log_every: int = 1  # progress line + metrics.jsonl record every N steps
    tracker: Literal["none", "tensorboard", "wandb"] = "none"  # extra metrics sink (metrics.jsonl is always written)
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # autocast dtype (auto: bf16 on GPUs and bf16-capable CPUs: AMX or AVX-512 BF16, else fp32)
    compile: bool = False  # torch.compile the model
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory, ~1/3 more compute, same losses
    ema: float | None = None  # keep an exponential moving average of the weights (e.g. 0.99) and save it as the final model

    def check(self) -> None:
        """Clear errors for values no stage can run with."""
        for name in ("grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")
        for name in ("steps", "eval_every", "save_every"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "steps" else 1):
                raise InputError(None, f"--{name.replace('_', '-')} must be positive (None: off)")

    def loop_config(self, default_steps: int | None, **stage: Any) -> TrainConfig:
        """The loop's TrainConfig; `stage` adds or overrides stage-specific fields (optimizer,
        muon_lr, sample_every, ...). Without --steps or --time-budget the stage's default steps."""
        steps = self.steps if self.steps is not None else (None if self.time_budget else default_steps)
        fields: dict[str, Any] = {
            "max_steps": steps,
            "max_time": self.time_budget,
            "grad_accum": self.grad_accum,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "schedule": self.schedule,
            "decay_frac": self.decay_frac,
            "warmup_steps": self.warmup,
            "min_lr_ratio": self.min_lr_ratio,
            "grad_clip": self.grad_clip or None,
            "device": self.device,
            "dtype": self.dtype,
            "compile": self.compile,
            "activation_checkpointing": self.activation_checkpointing,
            "seed": self.seed,
            "log_every": self.log_every,
            "eval_every": self.eval_every,
            "save_every": self.save_every,
            "ema": self.ema,
        }
        fields.update(stage)
        return TrainConfig(**fields)


@dataclass
class StageParts:
    """What a stage's builder hands the loop."""

    model: nn.Module  # what the loop trains (e.g. an adapter-only view for LoRA)
    batches: Iterator[Any]  # with state_dict()/load_state_dict() its position is checkpointed
    loss_fn: LossFn
    train: TrainConfig
    describe: str  # the one line printed before training starts
    evaluate: EvalFn | None = None
    sample: SampleFn | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # added to train_state.json's metadata
    tracker_config: dict[str, Any] = field(default_factory=dict)  # e.g. {"model": cfg.to_dict()}
    stale: tuple[str, ...] = ("metrics.jsonl", "samples.md", "loss.png")  # a fresh run removes these
    finish: Callable[[TrainResult], str] | None = None  # rank 0, after fit: save extras; text for the summary


def run_stage(
    cfg: LoopArgs,
    command: str,
    out: Path,
    build: Callable[[DistInfo, bool], StageParts],
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Set up, build the stage, train it through the one loop, write plots and print the summary.

    `out` holds the stage's records (metrics.jsonl, samples.md, loss.png, run.yaml); the loop's
    checkpoint goes to `checkpoint_dir` (default: `out`). `build(dist, resuming)` is called after
    seeding, so a model's init follows --seed; `resuming` says a checkpoint will be continued.
    """
    cfg.check()
    out = Path(out)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out
    dist = init_distributed(cfg.device)
    try:
        seed_everything(cfg.seed)
        resuming = cfg.resume and ckpt.has_checkpoint(ckpt_dir)
        if resuming and dist.is_main:
            ckpt.recover(ckpt_dir)
        parts = build(dist, resuming)
        stage_state = to_dict(cfg)
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resuming:
                if ckpt.has_checkpoint(ckpt_dir):
                    print0(f"note: starting fresh in {out}, replacing its checkpoint (use --resume to continue it)")
                for name in parts.stale:
                    (out / name).unlink(missing_ok=True)
            write_resolved(cfg, out, command)
        tracker = build_tracker(
            cfg.tracker, out, dist.is_main, run_name=f"{cfg.run}-{command.split()[-1]}",
            config={**parts.tracker_config, "train": asdict(parts.train), "stage": stage_state},
        )
        meta = run_metadata(dist.device)
        meta.update(parts.metadata, world_size=dist.world_size)
        print0(parts.describe)

        def on_resume(step: int) -> None:
            # The loop truncates the checkpoint folder's metrics.jsonl; records live in `out`.
            if dist.is_main:
                if ckpt_dir != out:
                    truncate_metrics(out / "metrics.jsonl", step)
                truncate_samples(out / "samples.md", step)

        trainer = Trainer(
            parts.model, parts.batches, parts.loss_fn, parts.train, out_dir=ckpt_dir,
            evaluate=parts.evaluate, sample=parts.sample, on_resume=on_resume, tracker=tracker,
            dist=dist, stage_state=stage_state, metadata=meta,
        )
        result = trainer.fit(resume=cfg.resume)
        if dist.is_main:
            extra = parts.finish(result) if parts.finish else ""
            png = plot_losses(out / "metrics.jsonl", out / "loss.png", title=f"{command} {cfg.run}")
            summary = f"done: {result.step} steps, {result.elapsed:.0f}s"
            if result.history:
                summary += f" | train loss {result.history[-1]['loss']:.4f}"
            summary += extra or val_summary(out / "metrics.jsonl")
            print0(f"{summary} -> {out}" + (f" (curves: {png.name})" if png else ""))
        return result
    finally:
        cleanup()


def val_summary(metrics_path: Path, keys: tuple[str, ...] = ("val_loss", "val_bpb")) -> str:
    """' | val_loss 6.2 -> 2.3' for each key logged at least once."""
    rows = read_metrics(metrics_path)
    text = ""
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            text += f" | {k} {vals[0]:.4f} -> {vals[-1]:.4f}"
    return text

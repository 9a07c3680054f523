"""Flags every training stage shares (the one loop's knobs), defined once.

Each stage builds its own parser and calls these for the groups it has, passing only its own
defaults (pretraining warms up longer and runs at a higher learning rate than finetuning), so
`gptlab pretrain --help` and `gptlab sft --help` describe the same flag the same way.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gptlab.train.loop import TrainConfig


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show '(default: X)' only where there is a default worth showing (not None / off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def add_schedule_args(g: argparse._ArgumentGroup, warmup: int, min_lr_ratio: float = 0.1) -> None:
    """--warmup, --schedule, --decay-frac, --min-lr-ratio."""
    g.add_argument(
        "--warmup",
        "--warmup-steps",
        dest="warmup",
        type=int,
        default=warmup,
        help="linear LR warmup steps",
    )
    g.add_argument(
        "--schedule",
        choices=("cosine", "wsd"),
        default="cosine",
        help="LR shape after warmup (wsd: warmup-stable-decay)",
    )
    g.add_argument(
        "--decay-frac",
        type=float,
        default=0.2,
        help="with --schedule wsd: the final fraction of training spent decaying",
    )
    g.add_argument(
        "--min-lr-ratio",
        type=float,
        default=min_lr_ratio,
        help="final LR as a fraction of the peak",
    )


def add_logging_args(
    g: argparse._ArgumentGroup, eval_every: int = 50, save_every: int = 100
) -> None:
    """--save-every, --log-every, --tracker (each stage adds its own --eval-every meaning)."""
    g.add_argument(
        "--eval-every",
        type=int,
        default=eval_every,
        help="evaluate on held-out data every N steps (and at 0 and the end; 0: off)",
    )
    g.add_argument(
        "--save-every",
        type=int,
        default=save_every,
        help="checkpoint every N steps (and at the end; 0: only at the end)",
    )
    g.add_argument(
        "--log-every",
        type=int,
        default=1,
        help="progress line + metrics.jsonl record every N steps",
    )
    g.add_argument(
        "--tracker",
        choices=("none", "tensorboard", "wandb"),
        default="none",
        help="extra metrics sink (metrics.jsonl is always written)",
    )


def add_device_args(g: argparse._ArgumentGroup) -> None:
    """--device, --dtype, --compile."""
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "bf16", "fp32"),
        help="autocast dtype (auto: bf16 on GPUs and on CPUs with AMX bf16 units, else fp32; "
        "pin fp32 for bit-exact comparisons)",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the model")


def loop_config(args: argparse.Namespace, **stage: Any) -> TrainConfig:
    """The loop's TrainConfig from the shared flags; `stage` adds or overrides stage-specific fields
    (e.g. max_steps, lr, muon_lr). A 0 in an every-N flag means off (None in the config)."""
    from gptlab.train.loop import TrainConfig

    fields: dict[str, Any] = {
        "max_time": args.time_budget,
        "grad_accum": args.grad_accum,
        "optimizer": args.optimizer,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "decay_frac": args.decay_frac,
        "warmup_steps": args.warmup,
        "min_lr_ratio": args.min_lr_ratio,
        "grad_clip": args.grad_clip or None,
        "device": args.device,
        "dtype": args.dtype,
        "compile": args.compile,
        "seed": args.seed,
        "log_every": args.log_every,
        "eval_every": args.eval_every or None,
        "sample_every": args.sample_every or None,
        "save_every": args.save_every or None,
    }
    fields.update(stage)
    return TrainConfig(**fields)

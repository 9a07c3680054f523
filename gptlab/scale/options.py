"""Options `gptlab sweep` and `gptlab scaling` share: where the data is, the fixed shape of every
run, and what makes runs reproducible (seed, fp32, budgets in steps, never seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gptlab.errors import InputError
from gptlab.options import DeviceArgs, RunArgs


@dataclass
class ScaleArgs(RunArgs, DeviceArgs):
    """Data, run shape and precision shared by every run of a sweep or a scaling series."""

    shards: Path | None = None  # token shard folder with a 'val' split (default: runs/<run>/shards)
    tokenizer: Path | None = None  # tokenizer folder, for bits per byte (default: runs/<run>/tokenizer)
    out: Path | None = None  # output folder (default: runs/<run>/<command>)
    head_dim: int = 32  # attention head size: heads = width / head-dim (at least 1)
    seq_len: int = 128  # tokens per row (T)
    batch_size: int = 8  # rows per step (B): each step trains on B x T tokens
    warmup_frac: float = 0.05  # fraction of each run's steps spent in linear LR warmup
    eval_tokens: int = 16384  # validation tokens per evaluation
    seed: int = 1337  # seeds every run's init and data order (the same for every run)
    dtype: Literal["auto", "bf16", "fp32"] = "fp32"  # fp32: the same numbers on every CPU; auto: bf16 where fast

    def check(self) -> None:
        """One-line errors for shapes no run can take."""
        for name in ("head_dim", "seq_len", "batch_size", "eval_tokens"):
            if getattr(self, name) < 1:
                raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")
        if self.head_dim % 2:
            raise InputError(None, "--head-dim must be even (rotary embeddings rotate pairs)")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise InputError(None, "--warmup-frac must be in [0, 1)")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

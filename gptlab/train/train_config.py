"""The loop's settings (`TrainConfig`, saved in every checkpoint) and what a run returns (`TrainResult`).

Kept apart from `gptlab.train.loop` so a stage can build its settings without the loop's imports;
`gptlab.train.loop` re-exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Settings of the loop itself; saved in every checkpoint's train_state.json (asdict)."""

    max_steps: int | None = 1000  # stop after this many optimizer updates (None: time budget only)
    max_time: float | None = None  # stop after this many seconds of training (None: steps only)
    grad_accum: int = (
        1  # micro-batches per update; the update equals one batch this many times larger
    )
    optimizer: str = "adamw"  # 'adamw', or 'muon' (Muon on hidden matrices, AdamW on the rest)
    lr: float = 3e-4  # peak learning rate (both optimizers, see optim.py)
    weight_decay: float = 0.1  # decoupled decay on matrices; none on norms and embeddings
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay (0.95: steadier for LMs than 0.999)
    embed_lr: float | None = None  # embedding tables' peak LR (None: lr)
    head_lr: float | None = None  # a scalar head's peak LR (reward model; None: lr)
    muon_lr: float | None = None  # Muon's peak LR, Keller's scale (None: lr, RMS-matched to AdamW)
    muon_momentum: float = 0.95  # Muon's momentum (Nesterov)
    muon_weight_decay: float | None = None  # Muon's decoupled decay (None: weight_decay)
    schedule: str = "cosine"  # 'cosine' or 'wsd' (warmup-stable-decay)
    warmup_steps: int = 0  # linear warmup updates
    min_lr_ratio: float = 0.1  # final lr = lr * min_lr_ratio
    decay_frac: float = 0.2  # wsd: fraction of training spent decaying
    grad_clip: float | None = 1.0  # clip the global gradient norm to this (None: no clipping)
    device: str = "auto"  # 'auto' (cuda > mps > cpu), or 'cpu', 'cuda', ...
    dtype: str = "auto"  # autocast: 'auto' (bf16 on GPUs and bf16-capable CPUs: AMX or AVX-512 BF16, else fp32), 'bf16', 'fp32'
    compile: bool = (
        False  # torch.compile the model (GPU: faster after a warmup; CPU: rarely worth it)
    )
    parallel: str = "ddp"  # with several processes: 'ddp' (replicate) or 'fsdp' (FSDP2, shard)
    activation_checkpointing: bool = False  # recompute each block's activations in backward (less memory, ~1/3 more compute)
    seed: int = 1337  # seeds init (the stage seeds before building the model) and data order
    log_every: int = 1  # progress line + metrics.jsonl record every N steps (each costs one sync)
    eval_every: int | None = None  # run the evaluate hook every N steps (and at 0 and the end)
    sample_every: int | None = None  # run the sample hook every N steps (and at 0 and the end)
    save_every: int | None = None  # write a checkpoint every N steps (always at the end)
    ema: float | None = None  # keep an EMA of the weights with this decay and end on it (None: off)


@dataclass
class TrainResult:
    step: int
    elapsed: float  # seconds of training (across resumes)
    history: list[dict[str, Any]] = field(default_factory=list)  # the logged train records
    resumed_from: int | None = None

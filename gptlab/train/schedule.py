"""Learning-rate schedules as a multiplier of the peak LR, a pure function of training progress.

Two shapes, both with a linear warmup:

- `cosine`: warmup, then a half cosine from 1 down to `min_lr_ratio` at the end of training.
- `wsd` (warmup-stable-decay, as in MiniCPM / nanochat / modded-nanogpt): warmup, hold the peak,
  then decay linearly to `min_lr_ratio` over the last `decay_frac` of training. A stable phase
  makes the run length easy to change (a time budget), since only the tail depends on it.

Progress is a fraction in [0, 1]: steps done / max_steps, or time spent / time budget.

    >>> round(lr_multiplier(0, 0.0, warmup_steps=10), 3)
    0.1
    >>> lr_multiplier(50, 0.5, warmup_steps=10, schedule="wsd")
    1.0
    >>> round(lr_multiplier(100, 1.0, warmup_steps=10, min_lr_ratio=0.1), 3)
    0.1
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "wsd")


def lr_multiplier(
    step: int,
    progress: float,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.1,
    decay_frac: float = 0.2,
) -> float:
    """Multiplier for the LR of update number `step` (0-based) at `progress` through training.

    Warmup is counted in steps (the first updates must be small whatever the budget); the rest of
    the shape follows `progress`, so a step budget and a time budget share one code path.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # wsd: flat at the peak until the last `decay_frac` of training, then linear to the floor.
    decay_start = 1.0 - decay_frac
    if progress <= decay_start or decay_frac <= 0:
        return 1.0
    frac = (progress - decay_start) / decay_frac
    return 1.0 - (1.0 - min_lr_ratio) * frac

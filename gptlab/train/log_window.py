"""What the loop logs: on-device sums over a log window, and the one progress line per log step.

Between log steps everything stays on the device (no `.item()`, no sync); a log step stacks the
window's sums into one tensor and reads it once (see `Trainer._log_window`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from gptlab.common import format_duration


def progress_line(
    step: int, max_steps: int | None, loss: float, lr: float, tok_s: float, eta: float | None
) -> str:
    """`step 00042/01000 | loss 2.3100 | lr 3.0e-04 | tok/s 41,200 | eta 3m05s`: fixed fields, one line."""
    width = max(5, len(str(max_steps or 0)))
    head = f"step {step:0{width}d}/{max_steps:0{width}d}" if max_steps else f"step {step:0{width}d}"
    eta_s = format_duration(eta) if eta is not None else "?"
    return f"{head} | loss {loss:.4f} | lr {lr:.1e} | tok/s {tok_s:,.0f} | eta {eta_s}"


@dataclass
class LogWindow:
    """On-device running sums between log steps: no sync until a log step reads them."""

    loss: torch.Tensor  # sum over updates of each update's mean micro-batch loss
    norm: torch.Tensor  # sum of pre-clip gradient norms
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # like loss, per metric
    steps: int = 0  # updates in the window
    tokens: int = 0  # tokens processed in the window (this rank)
    hook_time: float = 0.0  # seconds spent in hooks, left out of tok/s
    start: float = field(default_factory=time.perf_counter)

    @classmethod
    def on(cls, device: str) -> LogWindow:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device))

    def add(self, loss: torch.Tensor, metrics: dict[str, Any], accum: int) -> None:
        """Add one micro-batch's loss and metrics (each weighted 1/accum)."""
        self.loss += loss.detach() / accum
        self.tokens += int(metrics.get("tokens", 0))
        for k, v in metrics.items():
            if k != "tokens" and isinstance(v, torch.Tensor):
                self.metrics[k] = self.metrics.get(k, 0) + v.detach().float() / accum

    def reset(self) -> None:
        self.loss.zero_()
        self.norm.zero_()
        self.metrics.clear()
        self.steps, self.tokens, self.hook_time = 0, 0, 0.0
        self.start = time.perf_counter()

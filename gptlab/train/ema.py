"""An exponential moving average of the weights, kept as an "optimizer" so checkpoints carry it.

On a small corpus trained for a few epochs, the average of the last few hundred updates scores
better than the last update (measured on tinyshakespeare: docs/benchmarks.md, "The record: 1.437 nats/char in 5 CPU minutes").
`WeightAverage` never changes a parameter while training; its state (one `average` tensor per
parameter) goes into optimizer.pt with the real optimizers' state, so a killed run resumes with
the same average. At the end of training the loop swaps the average into the model, so the saved
model.safetensors, the final evaluation and everything downstream use it; the raw weights then sit
in the average's slot, and a resumed run swaps them back before it trains on.
"""

from __future__ import annotations

import torch


class WeightAverage(torch.optim.Optimizer):
    """average <- decay * average + (1 - decay) * weight, after every optimizer step; the average
    starts at the weights after the first step (the random init is not worth remembering)."""

    def __init__(self, params, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        # lr/base_lr are there for the loop's scheduler, which sets every group's lr; unused.
        super().__init__(params, {"decay": decay, "lr": 0.0, "base_lr": 0.0})

    def _averages(self, group: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = list(group["params"])
        for p in params:
            if "average" not in self.state[p]:
                self.state[p]["average"] = p.detach().clone()
        return params, [self.state[p]["average"] for p in params]

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params, averages = self._averages(group)
            torch._foreach_lerp_(averages, [p.detach() for p in params], 1.0 - group["decay"])

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the weights and their averages (twice is a no-op)."""
        for group in self.param_groups:
            params, averages = self._averages(group)
            for p, a in zip(params, averages):
                held = p.detach().clone()
                p.copy_(a)
                a.copy_(held)

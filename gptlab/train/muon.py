"""Muon with one Newton-Schulz call per matrix shape instead of one per matrix.

`torch.optim.Muon` orthogonalises each hidden matrix on its own: 28 small matrix chains per step for a
4-layer model. On a CPU at small widths that loop costs more than the forward pass (31 ms of an
80 ms step at width 128: docs/benchmarks.md, "The record"). Stacking the matrices that share
a shape (q/k/v/o; gate/up with down transposed) turns them into a few batched matmuls, which is the
same math and a third of the time.

The update is torch's own, term for term: Nesterov momentum on the raw gradient, the quintic
Newton-Schulz iteration in bf16 on each matrix scaled by its own Frobenius norm, decoupled weight
decay, and the same learning-rate adjustment. State (`momentum_buffer`) and hyperparameters are
torch's, so a checkpoint written by either optimizer resumes in the other. Parameters that are not
plain tensors (FSDP2's DTensor shards) take torch's per-matrix path, which knows them.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch


def adjusted_lr(lr: float, rule: str | None, shape: torch.Size) -> float:
    """torch's Muon LR rules: "original" (Keller: sqrt(max(1, A/B))) or "match_rms_adamw"
    (Moonshot: 0.2 * sqrt(max(A, B)), an update the size of AdamW's)."""
    a, b = shape[:2]
    if rule is None or rule == "original":
        return lr * math.sqrt(max(1, a / b))
    return lr * 0.2 * math.sqrt(max(a, b)) if rule == "match_rms_adamw" else lr


def newton_schulz_batched(
    g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """Orthogonalise each matrix of a (N, A, B) stack with A <= B: torch's iteration, batched."""
    a, b, c = coefficients
    x = g.bfloat16()
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, update, x, beta=a)
    return x


class BatchedMuon(torch.optim.Muon):
    """`torch.optim.Muon`, stepping all matrices of one shape (up to transposition) together."""

    @torch.no_grad()
    def step(self, closure=None):
        if any(type(p.data) is not torch.Tensor for g in self.param_groups for p in g["params"]):
            return super().step(closure)  # DTensor shards (FSDP2): torch's per-matrix path
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _step_group(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, wd, mom = float(group["lr"]), group["weight_decay"], group["momentum"]
        grads = [p.grad for p in params]
        if any(g.is_sparse or g.is_complex() for g in grads):
            raise ValueError("Muon takes dense real matrices only")
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_lerp_(bufs, grads, 1 - mom)
        updates = torch._foreach_lerp(grads, bufs, mom) if group["nesterov"] else bufs
        # Bucket by shape with the short side first, so one stack serves a matrix and its transpose.
        buckets: dict[tuple, list[int]] = defaultdict(list)
        for i, u in enumerate(updates):
            if u.ndim != 2:
                raise ValueError("Param gradient must be a 2D matrix")
            buckets[(min(u.shape), max(u.shape), u.device, u.dtype)].append(i)
        ortho: list[torch.Tensor | None] = [None] * len(params)
        for idx in buckets.values():
            stack = torch.stack([updates[i] if updates[i].size(0) <= updates[i].size(1) else updates[i].mT for i in idx])
            out = newton_schulz_batched(stack, group["ns_coefficients"], group["ns_steps"], group["eps"])
            for j, i in enumerate(idx):
                ortho[i] = out[j] if updates[i].size(0) <= updates[i].size(1) else out[j].mT
        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)
        for p, o in zip(params, ortho):
            p.add_(o, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))

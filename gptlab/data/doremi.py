"""DoReMi (Xie et al. 2023): learn a data mixture's domain weights with a small proxy model.

    1. train a reference model on batches drawn with reference weights (uniform or natural);
    2. train a proxy model with group DRO: at every step, per domain,
           excess_i = mean over domain i's tokens of max(loss_proxy - loss_reference, 0)
           alpha   <- softmax(log alpha + eta * excess)             (exponentiated gradient)
           alpha   <- (1 - c) * alpha + c / k                       (smoothing, c = 1e-3)
       and step the proxy on sum_i alpha_i * (its mean loss on domain i);
    3. the learned weights are alpha averaged over all steps (the paper's output).

A domain the proxy lags the reference on is learnable and gets more weight; a domain where both
are equally bad (noise, or already learned) has ~0 excess and loses weight. The proxy's batch
holds every domain in equal rows (the paper samples it uniformly over domains), so each step
measures every domain's excess.

This module holds the math and the batches; `gptlab.stages.mixture_search` trains the two models
through the one loop (`gptlab.train.loop.Trainer`): the proxy is only a stateful `loss_fn`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptlab.data.loader import PackedLoader


def rows_per_domain(weights: Sequence[float], batch_size: int) -> list[int]:
    """Rows of a batch per domain, proportional to `weights` (largest remainder), at least 1 each.

    >>> rows_per_domain([0.5, 0.5], 16), rows_per_domain([0.28, 0.72], 16), rows_per_domain([0.01, 0.99], 4)
    ([8, 8], [4, 12], [1, 3])
    """
    k = len(weights)
    if batch_size < k:
        raise ValueError(f"a batch of {batch_size} rows cannot hold {k} domains")
    exact = [w / sum(weights) * batch_size for w in weights]
    rows = [math.floor(e) for e in exact]
    by_remainder = sorted(range(k), key=lambda i: (-(exact[i] - rows[i]), i))
    for i in by_remainder[: batch_size - sum(rows)]:
        rows[i] += 1
    for i in range(k):  # every domain is seen every step: a row from the largest
        if rows[i] == 0:
            rows[max(range(k), key=lambda j: rows[j])] -= 1
            rows[i] = 1
    return rows


class DomainBatches:
    """Endless `(x, y, domain)` batches: `rows[i]` packed windows of domain i, stacked in order.

    One `PackedLoader` per domain's shard folder (each shuffled with its own seed), so a domain
    with few tokens simply starts its next epoch sooner.
    """

    def __init__(
        self, folders: Sequence[str | Path], rows: Sequence[int], seq_len: int, seed: int = 0,
        device: str | torch.device = "cpu", split: str = "train",
    ):
        if len(folders) != len(rows):
            raise ValueError("one row count per domain folder")
        self.loaders = [
            PackedLoader(f, split, r, seq_len, seed=seed + i, device=device)
            for i, (f, r) in enumerate(zip(folders, rows))
        ]
        self.domain = torch.cat(
            [torch.full((r,), i, dtype=torch.long) for i, r in enumerate(rows)]
        ).to(device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(next(loader) for loader in self.loaders))
        return torch.cat(xs), torch.cat(ys), self.domain


def domain_means(row_values: torch.Tensor, domain: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of `row_values` (B,) per domain (k,); 0 for a domain with no rows.

    >>> domain_means(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([0, 0, 1]), 3)
    tensor([ 2., 10.,  0.])
    """
    sums = torch.zeros(k, dtype=row_values.dtype, device=row_values.device)
    sums = sums.index_add(0, domain, row_values)
    counts = torch.bincount(domain, minlength=k).clamp(min=1).to(row_values.dtype)
    return sums / counts


def update_weights(
    alpha: torch.Tensor, excess: torch.Tensor, eta: float, smoothing: float
) -> torch.Tensor:
    """One exponentiated-gradient step of group DRO, then smoothing toward uniform.

    In log space (a softmax), so a large eta * excess cannot overflow.

    >>> update_weights(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), eta=1.0, smoothing=0.0)
    tensor([0.7311, 0.2689])
    """
    new = torch.softmax(torch.log(alpha) + eta * excess, dim=0)
    return (1 - smoothing) * new + smoothing / alpha.numel()


def mixture_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The reference model's loss: the mean over the batch, i.e. over its mixture of rows."""
    x, y = batch[0], batch[1]
    return model(x, y), {"tokens": y.numel()}


class DoReMiLoss:
    """The proxy's `loss_fn` for the one loop: updates the domain weights, returns the weighted loss.

    State: `alpha` (current weights), `alpha_sum` / `steps` (for the average, the learned
    weights), and `history` (weights and excess per call, for the plot). One call is one DRO
    step; with gradient accumulation each micro-batch is one.
    """

    def __init__(
        self, reference: nn.Module, names: Sequence[str], eta: float = 1.0,
        smoothing: float = 1e-3, init: Sequence[float] | None = None,
    ):
        if eta <= 0 or not 0 <= smoothing <= 1:
            raise ValueError("need eta > 0 and 0 <= smoothing <= 1")
        self.reference = reference.eval()
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.names, self.k = list(names), len(names)
        self.eta, self.smoothing = eta, smoothing
        start = torch.full((self.k,), 1.0 / self.k) if init is None else torch.tensor(init)
        self.alpha = (start / start.sum()).double()
        self.alpha_sum = torch.zeros(self.k, dtype=torch.float64)
        self.steps = 0
        self.history: list[dict[str, Any]] = []

    @property
    def average(self) -> list[float]:
        """The learned weights: alpha averaged over all steps so far (the initial one if none)."""
        avg = self.alpha_sum / self.steps if self.steps else self.alpha
        return (avg / avg.sum()).tolist()

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        x, y, domain = batch
        losses = model(x, y, reduction="none")  # (B, T) nats
        ref_device = next(self.reference.parameters()).device
        if ref_device != x.device:
            self.reference.to(x.device)
        with torch.no_grad():
            ref = self.reference(x, y, reduction="none")
            # Clipped per token, as in the paper: the reference cannot lower a domain's weight
            # by being worse on some tokens than the proxy is.
            per_token = (losses.detach().float() - ref.float()).clamp(min=0)
            excess = domain_means(per_token.mean(dim=1).double(), domain, self.k).cpu()
        self.alpha = update_weights(self.alpha, excess, self.eta, self.smoothing)
        self.alpha_sum += self.alpha
        self.steps += 1
        self.history.append({
            "step": self.steps, "weights": [round(w, 6) for w in self.alpha.tolist()],
            "excess": [round(e, 6) for e in excess.tolist()],
        })
        per_domain = domain_means(losses.float().mean(dim=1), domain, self.k)
        loss = (self.alpha.to(per_domain) * per_domain).sum()
        metrics: dict[str, Any] = {"tokens": y.numel()}
        for i, name in enumerate(self.names):  # on the loss's device: the loop stacks them
            metrics[f"weight/{name}"] = self.alpha[i].float().to(losses.device)
            metrics[f"excess/{name}"] = excess[i].float().to(losses.device)
        return loss, metrics

"""Optimizers: AdamW with decay/no-decay parameter groups, and Muon for the hidden matrices.

Rules (as in nanoGPT, nanochat and modded-nanogpt):
- Weight decay applies to matrices only; norm gains and embeddings are not decayed (decaying an
  embedding row pulls rare tokens toward zero, decaying a gain pulls the norm toward zero).
- With `optimizer="muon"`, the 2D matrices inside the transformer blocks (attention and MLP
  projections) go to Muon (`train/muon.py`: torch's update, batched by shape); the embedding, the output head(s) and the norm gains stay
  on AdamW: Muon orthogonalises an update, which makes sense for a linear map between hidden
  states, not for a lookup table or a classifier over the vocabulary.
- Muon uses `adjust_lr_fn="match_rms_adamw"` (Moonshot's rule: scale by 0.2 * sqrt(max(A, B))),
  so its update has the RMS of an AdamW update and one `lr` serves both optimizers; or, given
  its own `muon_lr`, Keller Jordan's original scale sqrt(max(1, A/B)) with that LR (~0.02).

Every group carries `base_lr`; the loop sets `lr = base_lr * schedule(step)` on each group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from gptlab.train.muon import BatchedMuon

OPTIMIZERS = ("adamw", "muon")


def _embedding_param_ids(model: nn.Module) -> set[int]:
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}


def is_head(name: str) -> bool:
    """Output heads ('lm_head.weight', 'value_head.weight'): classifiers, kept on AdamW."""
    parts = name.split(".")
    return len(parts) >= 2 and "head" in parts[-2]


def split_params(model: nn.Module, muon: bool = False) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Sort trainable parameters into groups, each parameter exactly once.

    'muon': 2D matrices inside the blocks (only when muon=True); 'decay': the other matrices
    (the output head(s)); 'embed': embedding tables; 'no_decay': norm gains and other vectors.
    A tied lm_head/embedding weight is one parameter (named_parameters() dedupes it) and counts
    as an embedding.
    """
    emb = _embedding_param_ids(model)
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {
        "muon": [],
        "decay": [],
        "embed": [],
        "no_decay": [],
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in emb:
            groups["embed"].append((name, p))
        elif p.dim() < 2:
            groups["no_decay"].append((name, p))
        elif muon and p.dim() == 2 and not is_head(name):
            groups["muon"].append((name, p))
        else:
            groups["decay"].append((name, p))
    return groups


class CombinedOptimizer:
    """Several optimizers stepped as one: Muon for hidden matrices + AdamW for the rest.

    Duck-types the part of `torch.optim.Optimizer` the loop uses: `param_groups` is the
    concatenation of the parts' groups (the same dicts, so setting `group["lr"]` reaches the
    part that owns it), and the state dict is the list of the parts' state dicts.
    """

    def __init__(self, optimizers: Iterable[torch.optim.Optimizer]):
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        parts = state_dict["optimizers"]
        if len(parts) != len(self.optimizers):
            raise ValueError(
                f"optimizer state has {len(parts)} parts, expected {len(self.optimizers)}"
            )
        for opt, sd in zip(self.optimizers, parts):
            opt.load_state_dict(sd)

    def __repr__(self) -> str:
        return f"CombinedOptimizer({', '.join(type(o).__name__ for o in self.optimizers)})"


def _adamw_kwargs(device_type: str) -> dict[str, Any]:
    # The fused kernel is one launch for all parameters on CUDA; on CPU it also beats foreach here
    # (see benchmarks/bench_throughput.py). Fall back to foreach on other devices (mps).
    if device_type in ("cuda", "cpu"):
        return {"fused": True}
    return {"foreach": True}


def build_optimizer(
    model: nn.Module,
    name: str = "adamw",
    lr: float = 3e-4,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    embed_lr: float | None = None,
    muon_lr: float | None = None,
    muon_momentum: float = 0.95,
    muon_weight_decay: float | None = None,
    device_type: str | None = None,
    head_lr: float | None = None,
) -> torch.optim.Optimizer | CombinedOptimizer:
    """AdamW (decay on matrices, none on norms/embeddings), or Muon + AdamW when name='muon'.

    `embed_lr` (None: `lr`) is the embedding tables' LR. Muon: with `muon_lr=None` the hidden
    matrices use `lr` with Moonshot's RMS-matching scale (one LR for everything); with a
    `muon_lr` (Keller Jordan's ~0.02) they use it with Keller's sqrt(max(1, A/B)) scale.
    `head_lr` (None: `lr`) is the LR of a scalar head added on top of a pretrained trunk (the
    reward model's `head.*`): it starts at zero and must move far in few steps, while the trunk
    should move little. Every parameter lands in exactly one group; each group records `base_lr`
    for the scheduler.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    if device_type is None:
        first = next(model.parameters(), None)
        device_type = first.device.type if first is not None else "cpu"
    groups = split_params(model, muon=name == "muon")
    scalar_head: list[nn.Parameter] = []
    if head_lr is not None:  # pull the top-level `head.*` out of whichever group holds it
        for key in groups:
            scalar_head += [p for n, p in groups[key] if n.split(".")[0] == "head"]
            groups[key] = [(n, p) for n, p in groups[key] if n.split(".")[0] != "head"]
    elr = lr if embed_lr is None else embed_lr
    adam_groups = [
        {
            "params": [p for _, p in groups["decay"]],
            "weight_decay": weight_decay,
            "base_lr": lr,
            "lr": lr,
        },
        {"params": [p for _, p in groups["embed"]], "weight_decay": 0.0, "base_lr": elr, "lr": elr},
        {
            "params": [p for _, p in groups["no_decay"]],
            "weight_decay": 0.0,
            "base_lr": lr,
            "lr": lr,
        },
    ]
    if scalar_head:
        adam_groups.append({"params": scalar_head, "weight_decay": 0.0, "base_lr": head_lr, "lr": head_lr})
    adam_groups = [g for g in adam_groups if g["params"]]
    adamw = torch.optim.AdamW(
        adam_groups, lr=lr, betas=betas, eps=eps, **_adamw_kwargs(device_type)
    )
    if name == "adamw":
        return adamw
    mlr = lr if muon_lr is None else muon_lr
    muon = BatchedMuon(
        [{"params": [p for _, p in groups["muon"]], "base_lr": mlr}],
        lr=mlr,
        weight_decay=weight_decay if muon_weight_decay is None else muon_weight_decay,
        momentum=muon_momentum,
        adjust_lr_fn="match_rms_adamw" if muon_lr is None else "original",
    )
    return CombinedOptimizer([muon, adamw])


def set_lr(optimizer: torch.optim.Optimizer | CombinedOptimizer, multiplier: float) -> None:
    """Set every group's lr to its base_lr * multiplier (the schedule scales all groups alike)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier

"""LoRA (Hu et al. 2021) on our own modules: a frozen `nn.Linear` plus a trainable low-rank update.

    y = W x + (alpha / r) * B A x        A: (r, in) ~ Kaiming-uniform, B: (out, r) = 0

B starts at zero, so a freshly wrapped model computes exactly what the base model computes, and
training moves only A and B (r * (in + out) numbers per matrix instead of in * out).

Why our own few lines and not PEFT: PEFT targets Hugging Face modules; ours are plain
`nn.Linear`s with Llama's names (`q_proj`, `v_proj`, ...), so wrapping them is a module swap.
`merge_lora` folds B A into W and puts the plain `nn.Linear` back, so a merged model's state
dict has exactly the base names (`layers.0.self_attn.q_proj.weight`) and exports to Hugging Face
like any other checkpoint.

Files (an SFT folder trained with LoRA, unless merged):
    adapter.safetensors    only the lora_A / lora_B tensors, keyed by their module names (and
                           `embed_tokens.rows`: trained rows of special tokens, token_rows.py)
    adapter_config.json    {"base": <base folder, relative to this folder>, "rank", "alpha",
                            "targets", "dropout", "modules": [wrapped module names],
                            "token_rows": [their ids], when there are any}

    >>> model = load_model("runs/tiny/base")                              # doctest: +SKIP
    >>> apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16)            # doctest: +SKIP
    ['layers.0.self_attn.q_proj', 'layers.0.self_attn.v_proj', ...]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptlab.errors import InputError
from gptlab.fileio import atomic_write_json, read_json
from gptlab.model.token_rows import merge_rows, row_ids, rows_state_dict, wrap_rows
from gptlab.model.weights import WEIGHTS, load_full_model, read_tensors, save_tensors

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# What "all" expands to: every projection inside the blocks (the head and embeddings stay out).
ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """A frozen `base` linear layer plus the low-rank update (alpha / r) * B A."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {r}")
        self.base = base
        self.r, self.alpha = r, alpha
        self.scaling = alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype)
        )
        # Kaiming-uniform A (as nn.Linear and the paper's reference code); B = 0 makes the
        # update start at exactly zero, so the wrapped model begins as the base model.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        for p in base.parameters():
            p.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (for code that reads `.weight`, e.g. shape checks or tied heads)."""
        return self.base.weight

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) * B @ A, shaped like the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two thin matmuls (x A^T, then B^T) instead of forming B A: O(r (in + out)) per token.
        update = nn.functional.linear(
            nn.functional.linear(self.dropout(x), self.lora_A), self.lora_B
        )
        return self.base(x) + update * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear whose weight is W + (alpha / r) B A (the base module, updated in place)."""
        with torch.no_grad():
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.base.weight.requires_grad_(True)
        return self.base

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}"


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def parse_targets(spec: str | list[str]) -> list[str]:
    """'q_proj,v_proj' -> ['q_proj', 'v_proj']; 'all' -> every projection in the blocks."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for t in (s.strip() for s in items):
        if not t:
            continue
        for name in ALL_TARGETS if t == "all" else (t,):
            if name not in out:
                out.append(name)
    return out


def apply_lora(
    model: nn.Module,
    targets: list[str] | str,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    token_rows: list[int] | None = None,
) -> list[str]:
    """Wrap every nn.Linear whose last name part is in `targets`; freeze every other parameter
    except the embedding (and head) rows of `token_rows` (see token_rows.py).

    Returns the wrapped module names (e.g. 'layers.0.self_attn.q_proj'). Raises ValueError when a
    target matches nothing (a typo would otherwise train nothing at all).
    """
    targets = parse_targets(targets)
    found = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rpartition(".")[2] in targets
    ]
    missing = [t for t in targets if not any(n.rpartition(".")[2] == t for n in found)]
    if missing:
        linears = sorted(
            {n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        raise ValueError(
            f"LoRA targets {missing} match no linear layer; choose from {linears} or 'all'"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for name in found:
        _set_module(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout))
    if token_rows:
        wrap_rows(model, token_rows)
    return found


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> list[str]:
    """Fold every adapter into its base weight and restore plain nn.Linear modules.

    Afterwards the state dict names equal the base model's, so `save_model` / HF export work
    unchanged. Every parameter is trainable again (as in a base model). Returns merged names.
    """
    names = list(lora_modules(model))
    for name in names:
        _set_module(model, name, model.get_submodule(name).merged())
    merge_rows(model)
    if names:
        for p in model.parameters():
            p.requires_grad_(True)
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors: {'layers.0.self_attn.q_proj.lora_A': ..., '....lora_B': ...},
    plus the trained token rows ('embed_tokens.rows') when there are any."""
    out = {}
    for name, m in lora_modules(model).items():
        out[f"{name}.lora_A"] = m.lora_A.detach()
        out[f"{name}.lora_B"] = m.lora_B.detach()
    if hasattr(model, "embed_tokens"):
        out |= {k: v.detach() for k, v in rows_state_dict(model).items()}
    return out


def load_lora_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], where: str | Path | None = None
) -> None:
    """Copy adapter tensors into a model that `apply_lora` already wrapped; names and shapes must match."""
    expected = lora_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(
            where,
            f"adapter does not match the model (missing={missing[:3]}, unexpected={unexpected[:3]})",
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise InputError(
                where,
                f"adapter tensor {k} has shape {tuple(v.shape)}, model wants {tuple(expected[k].shape)}",
            )
    with torch.no_grad():
        for k, v in state.items():
            expected[k].copy_(v)


def save_adapter(folder: str | Path, model: nn.Module, config: dict[str, Any]) -> None:
    """Write adapter.safetensors and adapter_config.json atomically (config: base, rank, alpha, ...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to("cpu").contiguous() for k, v in lora_state_dict(model).items()}
    save_tensors(folder / ADAPTER_WEIGHTS, tensors, metadata={"format": "pt"})
    rows = {"token_rows": row_ids(model)} if hasattr(model, "embed_tokens") and row_ids(model) else {}
    atomic_write_json(folder / ADAPTER_CONFIG, {**config, **rows, "modules": sorted(lora_modules(model))})


def load_adapter(model: nn.Module, folder: str | Path) -> None:
    """Fill an already-wrapped model's adapters from `folder/adapter.safetensors`."""
    path = Path(folder) / ADAPTER_WEIGHTS
    if not path.exists():
        raise InputError(folder, f"no {ADAPTER_WEIGHTS} here")
    load_lora_state_dict(model, read_tensors(path), where=path)


def adapter_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / ADAPTER_CONFIG
    if not path.exists():
        raise InputError(folder, f"no {ADAPTER_CONFIG} here; is this a LoRA output folder?")
    cfg = read_json(path)
    for key in ("base", "rank", "alpha", "targets"):
        if key not in cfg:
            raise InputError(path, f"missing field {key!r}")
    return cfg


def load_model_with_adapter(
    folder: str | Path,
    device: str | torch.device = "cpu",
    base: str | Path | None = None,
    merge: bool = False,
) -> nn.Module:
    """Base model + adapter from a LoRA output folder, ready for inference (eval mode).

    The base folder is read from adapter_config.json (stored relative to `folder`, so a run
    folder can move as a whole) unless `base` overrides it. `merge=True` folds the adapter in
    (a plain model, as fast as the base); otherwise the LoRA modules stay (same logits).
    The base may itself be a LoRA folder: it loads merged.
    """
    folder = Path(folder)
    cfg = adapter_config(folder)
    base_path = Path(base) if base is not None else folder / cfg["base"]
    model = load_merged(base_path) if is_adapter_folder(base_path) else load_full_model(base_path)
    apply_lora(model, cfg["targets"], int(cfg["rank"]), float(cfg["alpha"]), 0.0, cfg.get("token_rows"))
    load_adapter(model, folder)
    if merge:
        merge_lora(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


def is_adapter_folder(folder: str | Path) -> bool:
    """A LoRA output folder: an adapter and no full weights beside it."""
    folder = Path(folder)
    return not (folder / WEIGHTS).exists() and (folder / ADAPTER_CONFIG).exists()


def load_merged(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A LoRA folder as a plain model (base + merged adapter), trainable and in train mode like
    any loaded model (`gptlab.model.io.load_model` on a LoRA folder)."""
    model = load_model_with_adapter(folder, device=device, merge=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


class AdapterOnly(nn.Module):
    """A view of a LoRA-wrapped model whose state dict is the adapter alone.

    The training loop checkpoints `model.state_dict()`; wrapped in this, a LoRA run's checkpoint
    (weights + AdamW moments) holds only the adapter, not a copy of the frozen base. Forward and
    goes through; the model itself is `.inner` (not `.module`, which would read as a DDP wrapper
    to unwrap). It has no `config` on purpose: checkpoint code treats a model with a config as a
    full one (e.g. re-ties embeddings on load), which an adapter-only state dict is not.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return dict(lora_state_dict(self.inner))

    def load_state_dict(
        self, state_dict: dict[str, torch.Tensor], strict: bool = True, assign: bool = False
    ):  # type: ignore[override]
        load_lora_state_dict(self.inner, dict(state_dict))
        return nn.modules.module._IncompatibleKeys([], [])

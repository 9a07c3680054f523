"""A full model's files: `model.safetensors` + `config.json` (no pickle anywhere).

The file layer under both `gptlab.model.io` (load any stage folder) and `gptlab.model.lora`
(an adapter's base is one of these folders): it knows nothing of adapters, so neither of them
has to import the other.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptlab.errors import InputError
from gptlab.fileio import atomic_path, atomic_write_json, read_json
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT, rotary_tables

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """{alias: first name} for state-dict entries that share storage (tied weights).

    A GPT with tied embeddings gives {"lm_head.weight": "embed_tokens.weight"}; a module that
    wraps one (reward model, value model) gives the same under its own prefix.
    """
    first: dict[tuple[int, int], str] = {}
    aliases: dict[str, str] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        key = (t.data_ptr(), t.numel())
        if t.numel() and key in first:
            aliases[name] = first[key]
        else:
            first.setdefault(key, name)
    return aliases


def fill_tied(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the tied entries that saving left out (see model_state_for_saving)."""
    for alias, name in tied_aliases(model).items():
        if alias not in weights and name in weights:
            weights[alias] = weights[name]
    return weights


def model_state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, with tied weights stored once (safetensors refuses shared storage)."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    model = getattr(model, "module", model)  # unwrap DDP
    aliases = tied_aliases(model)
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if k not in aliases}


def save_tensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Atomically write a safetensors file ({"format": "pt"} metadata unless given: transformers
    refuses safetensors files without it)."""
    with atomic_path(path) as tmp:  # safetensors writes by file name
        save_file(tensors, str(tmp), metadata=metadata or {"format": "pt"})


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
    """Atomically write a model's weights as a safetensors file."""
    save_tensors(path, model_state_for_saving(model), metadata)


def save_model(folder: str | Path, model: GPT) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / CONFIG, model.config.to_dict())
    save_weights(folder / WEIGHTS, model)


def load_config(folder: str | Path) -> ModelConfig:
    """config.json as a ModelConfig; InputError naming the file and field for a wrong type or size
    ("n_layer": "four"), which would otherwise fail deep inside the model's constructor."""
    path = Path(folder) / CONFIG
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(path, "expected a JSON object of model settings")
    for f in fields(ModelConfig):
        if f.name not in data:
            continue
        v, kind = data[f.name], f.type if isinstance(f.type, str) else f.type.__name__
        ok = {"int": isinstance(v, int) and not isinstance(v, bool) and v >= 1,
              "float": isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": isinstance(v, bool)}.get(kind, True)
        if not ok:
            want = {"int": "a whole number >= 1", "float": "a number", "bool": "true or false"}[kind]
            raise InputError(path, f"{f.name} must be {want}, got {json.dumps(v)[:40]}")
    try:
        return ModelConfig.from_dict(data)
    except ValueError as e:
        raise InputError(path, str(e)) from None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file on the CPU; a truncated or foreign file is one InputError."""
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as e:
        raise InputError(path, f"not a readable safetensors file ({e})") from None


def load_full_model(folder: str | Path, device: str | torch.device = "cpu") -> GPT:
    """Build the model from `config.json` and fill it from `model.safetensors`."""
    folder = Path(folder)
    weights = folder / WEIGHTS
    if not weights.exists():
        raise InputError(folder, f"no {WEIGHTS} here; is this a stage folder (e.g. runs/x/base)?")
    cfg = load_config(folder)
    # Built on the meta device and given the file's tensors as they are (assign): no random
    # init to throw away, and no second copy of the weights (a 135M model took 842 MB, not 450).
    with torch.device("meta"):
        model = GPT(cfg)
    state = fill_tied(model, read_tensors(weights))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:  # a tensor of another shape than config.json says
        raise InputError(weights, f"weights do not match config.json ({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise InputError(weights, f"weights do not match config.json (missing={missing[:3]}, unexpected={unexpected[:3]})")
    if cfg.tie_embeddings:  # assign made two Parameters of one tensor: one Parameter again
        model.lm_head.weight = model.embed_tokens.weight
    model.rope_cos, model.rope_sin = rotary_tables(cfg)  # buffers are not in the file
    return model.to(device)

"""Checkpoints that survive a kill at any instant, and resume onto the same trajectory.

A stage folder (e.g. `runs/tiny/base/`) holds the latest checkpoint as plain files:

    model.safetensors   weights (safetensors, never pickle)
    config.json         the model config
    optimizer.pt        optimizer state, tensors and plain containers only (load: weights_only=True)
    train_state.json    step, data-loader position, RNG states, the TrainConfig, run metadata,
                        and the size of each file above (a consistency check)
    metrics.jsonl, samples.md   written by the loop / stage, not part of the checkpoint set

Writing is a roll-forward journal, so the four files always belong to one checkpoint:

1. write all four into `.ckpt-pending/` (train_state.json last), fsync each file and the folder;
2. rename `.ckpt-pending/` -> `.ckpt-commit/` (atomic: from here on the new checkpoint is whole);
3. move each file from `.ckpt-commit/` over its old copy (os.replace, atomic per file),
   train_state.json last; remove `.ckpt-commit/`.

A kill in step 1 leaves the old files untouched and a stale `.ckpt-pending/`, which `recover()`
deletes. A kill in step 3 leaves a complete `.ckpt-commit/`, which `recover()` finishes moving.
Every reader (`load_checkpoint`, and each new writer) calls `recover()` first. A reader that does
not (e.g. `gptlab.model.io.load_model`) still always sees a whole model.safetensors.

Env hook for the kill tests: GPTLAB_CKPT_TEST_SLEEP=<seconds> sleeps between file writes, so a
test can SIGKILL the process in the middle of writing a checkpoint.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from gptlab.errors import InputError
from gptlab.fileio import atomic_open, atomic_write_json, fsync_dir, read_json
from gptlab.model.weights import fill_tied, model_state_for_saving, save_tensors
from gptlab.train.distributed import is_fsdp, unwrap

WEIGHTS, CONFIG, OPTIMIZER, STATE = (
    "model.safetensors",
    "config.json",
    "optimizer.pt",
    "train_state.json",
)
CHECKPOINT_FILES = (WEIGHTS, CONFIG, OPTIMIZER, STATE)  # STATE last: its presence marks completion
# The subfolder of a stage's --out that holds its resumable state when the outputs differ from what
# the loop trains (a LoRA adapter merged at the end, an actor-critic, a reward trunk + head).
SUBFOLDER = "checkpoint"
PENDING, COMMIT = ".ckpt-pending", ".ckpt-commit"


# ---------------------------------------------------------------- RNG state as JSON-safe data


# Generator states are kilobytes of words: stored as base64 strings so train_state.json stays
# readable (one line each) instead of 1,300 lines of integers.


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def _words_b64(words: Any) -> str:
    return base64.b64encode(np.asarray(words, dtype="<u4").tobytes()).decode("ascii")


def _words_unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<u4").copy()


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states as JSON-serialisable data."""
    py_version, py_state, py_gauss = random.getstate()  # py_state: 624 MT words + position
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, _words_b64(py_state), py_gauss],
        "numpy": [np_kind, _words_b64(np_keys), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    v, s, g = state["python"]
    random.setstate((v, tuple(int(w) for w in _words_unb64(s)), g))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, _words_unb64(keys), pos, has_gauss, gauss))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        states = [_unb64(s) for s in state["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# ---------------------------------------------------------------- the journal


def _test_pause() -> None:
    delay = os.environ.get("GPTLAB_CKPT_TEST_SLEEP")
    if delay:
        time.sleep(float(delay))


def recover(folder: str | Path) -> None:
    """Bring a stage folder to a consistent state after a kill (see the module docstring)."""
    folder = Path(folder)
    pending, commit = folder / PENDING, folder / COMMIT
    if pending.exists():
        shutil.rmtree(pending)
    if commit.exists():
        # Everything in .ckpt-commit/ is complete and newer than what it replaces: roll forward.
        for name in CHECKPOINT_FILES:
            src = commit / name
            if src.exists():
                os.replace(src, folder / name)
        fsync_dir(folder)
        shutil.rmtree(commit)
        fsync_dir(folder)


# ---------------------------------------------------------------- save / load


def _full_state_dicts(
    model: torch.nn.Module, optimizer: Any
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Model and optimizer state as full (unsharded) CPU tensors.

    FSDP2 shards both; the DCP state-dict API gathers them (a collective: every rank must call
    this). For plain and DDP models the optimizer's own state dict is already full.
    """
    if is_fsdp(model):
        # Lazy: the DCP modules only matter under FSDP (several processes); see is_fsdp.
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        inner = unwrap(model)
        msd = get_model_state_dict(inner, options=opts)
        parts = getattr(optimizer, "optimizers", [optimizer])
        osd = {"fsdp_optimizers": [get_optimizer_state_dict(inner, o, options=opts) for o in parts]}
        return {k: v.contiguous() for k, v in msd.items()}, osd
    return model_state_for_saving(model), optimizer.state_dict()


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: Any,
    state: dict[str, Any],
    model_config: dict[str, Any] | None = None,
    is_main: bool = True,
) -> None:
    """Write model + optimizer + train_state as one consistent checkpoint into `folder`.

    `state` is the JSON-safe part (step, loader position, TrainConfig, ...); RNG states are
    added here. Collective under FSDP (call on every rank); only `is_main` writes.
    """
    weights, opt_state = _full_state_dicts(model, optimizer)
    if not is_main:
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover(folder)
    pending = folder / PENDING
    pending.mkdir()
    if model_config is None:
        cfg = getattr(unwrap(model), "config", None)
        model_config = cfg.to_dict() if cfg is not None else {}

    # Each file is written whole (temp name, fsync, rename) inside .ckpt-pending/.
    save_tensors(pending / WEIGHTS, weights, metadata={"format": "pt"})
    _test_pause()
    atomic_write_json(pending / CONFIG, model_config)
    _test_pause()
    with atomic_open(pending / OPTIMIZER, "wb") as f:
        torch.save(opt_state, f)
    _test_pause()
    full_state = dict(state)
    full_state["rng"] = rng_state()
    full_state["files"] = {n: (pending / n).stat().st_size for n in (WEIGHTS, CONFIG, OPTIMIZER)}
    atomic_write_json(pending / STATE, full_state)
    fsync_dir(pending)
    _test_pause()
    os.replace(pending, folder / COMMIT)  # the commit point
    fsync_dir(folder)
    _test_pause()
    recover(folder)  # step 3: move the files into place, train_state.json last


def has_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / STATE).exists() or (folder / COMMIT / STATE).exists()


def load_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: Any | None = None,
    restore_rng: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Fill `model` (and `optimizer`) from the checkpoint in `folder`; return its train_state.

    Recovers an interrupted write first. Optimizer state is read with weights_only=True.
    """
    folder = Path(folder)
    recover(folder)
    if not (folder / STATE).exists():
        raise InputError(folder, f"no checkpoint here ({STATE} missing); nothing to resume")
    state = read_json(folder / STATE)
    for name, size in state.get("files", {}).items():
        path = folder / name
        if not path.exists() or path.stat().st_size != size:
            raise InputError(
                path, f"does not match {STATE} (expected {size} bytes): checkpoint is inconsistent"
            )
    weights = load_file(str(folder / WEIGHTS), device="cpu")
    inner = unwrap(model)
    fill_tied(inner, weights)
    opt_state = None
    if optimizer is not None:
        opt_state = torch.load(folder / OPTIMIZER, map_location="cpu", weights_only=True)
    if is_fsdp(model):
        # Lazy: the DCP modules only matter under FSDP (several processes); see is_fsdp.
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
        set_model_state_dict(inner, weights, options=opts)
        if optimizer is not None:
            parts = getattr(optimizer, "optimizers", [optimizer])
            for o, sd in zip(parts, opt_state["fsdp_optimizers"]):
                set_optimizer_state_dict(inner, o, sd, options=opts)
    else:
        missing, unexpected = inner.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise InputError(
                folder / WEIGHTS,
                f"weights do not match the model (missing={missing[:3]}, unexpected={unexpected[:3]})",
            )
        if optimizer is not None:
            optimizer.load_state_dict(opt_state)
    if restore_rng and "rng" in state:
        set_rng_state(state["rng"])
    return state

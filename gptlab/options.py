"""Options that many commands share, declared once: a command's config dataclass inherits them
(`class EvalConfig(RunArgs, DeviceArgs)`) and redeclares a field only to change its default or to
say what its default means there (`--from` of `gptlab sft` is a base model, of `gptlab rl` a policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import tyro

if TYPE_CHECKING:
    import torch

# `--from`: the input model or stage folder of every command. `from` is a Python keyword, so the
# field is `from_` and this annotation names the flag and the config-file key.
FromPath = Annotated[Path | None, tyro.conf.arg(name="from")]


@dataclass
class RunArgs:
    """The run whose folders fill the default paths."""

    run: str = "tiny"  # run name: default paths are under runs/<run>/


@dataclass
class DeviceArgs:
    """Where the model runs."""

    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps


@dataclass
class InferenceArgs(DeviceArgs):
    """Where a model that only reads runs, and in which precision (the training stages' own rule)."""

    dtype: Literal["auto", "bf16", "fp32"] = "fp32"  # autocast dtype: fp32 (exact, comparable across machines and frameworks), bf16, or auto (bf16 on GPUs and bf16-capable CPUs: faster, scores move slightly)

    def autocast_dtype(self, model: torch.nn.Module) -> torch.dtype | None:
        """bf16 or None (fp32) for a model already on its device."""
        from gptlab.common import pick_autocast_dtype

        return pick_autocast_dtype(next(model.parameters()).device.type, self.dtype)

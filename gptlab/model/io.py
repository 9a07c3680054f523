"""Load any stage folder as a model: full weights, or a LoRA adapter merged into its base.

Every stage folder that holds weights (base, sft, rm, ...) is `model.safetensors` + `config.json`
(`gptlab.model.weights`) or, for a LoRA run, `adapter.safetensors` + `adapter_config.json`
(`gptlab.model.lora`), so any stage can be the input of any later one by path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.model.gpt import GPT
from gptlab.model.lora import is_adapter_folder, load_merged

# The file layer, re-exported: stages and tests import these names from here.
from gptlab.model.weights import (  # noqa: F401
    CONFIG,
    WEIGHTS,
    fill_tied,
    load_config,
    load_full_model,
    model_state_for_saving,
    save_model,
    save_weights,
    tied_aliases,
)


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> GPT:
    """Build the model from `config.json` and fill it from `model.safetensors`.

    A LoRA stage folder (only `adapter.safetensors` + `adapter_config.json`) loads as its base
    with the adapter merged in, so every stage and tool can take either kind of folder.
    """
    if is_adapter_folder(folder):
        return load_merged(folder, device)
    return load_full_model(folder, device)

"""Load a stage folder for inference and wire it into an `Engine`.

    model, tok = load_for_inference("runs/tiny/sft")
    engine = make_engine(model, tok)            # stops at <|end|>, runs the calculator
    ids = engine.generate_all([tok.render_prompt(messages)], 64, temperature=0)[0]

A stage folder holds either full weights (`model.safetensors` + `config.json`) or only a LoRA
adapter (`adapter_config.json`, written by LoRA SFT); the adapter names its base model itself, so
both load from the same `--from` path. The tokenizer is the run's `tokenizer/` folder beside it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.common import pick_device
from gptlab.errors import InputError
from gptlab.infer.engine import Engine
from gptlab.model.io import load_model
from gptlab.model.lora import ADAPTER_CONFIG, load_model_with_adapter
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.tokenizer.protocol import TokenizerLike
from gptlab.tokenizer.special import TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END
from gptlab.tools.registry import ToolRegistry, make_tool_hook

# The tool tokens the engine frames calls with (gptlab's own; `gptlab import` adds them).
_REQUIRED = (TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END)


def load_for_inference(
    stage_folder: str | Path,
    device: str = "auto",
    tokenizer: str | Path | TokenizerLike | None = None,
) -> tuple[torch.nn.Module, TokenizerLike]:
    """(frozen model in eval mode on `device`, tokenizer) for a stage folder; InputError if either is missing.

    `tokenizer` is a folder, an already loaded TokenizerLike, or None for `stage_folder/../tokenizer`.
    """
    folder = Path(stage_folder)
    if not folder.is_dir():
        raise InputError(folder, "stage folder not found (expected e.g. runs/<name>/sft)")
    device = pick_device(device)
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        tok = tokenizer
    else:
        tok = load_tokenizer(
            Path(tokenizer) if tokenizer is not None else folder.parent / "tokenizer"
        )
    missing = [s for s in _REQUIRED if s not in tok.special_ids]
    if missing:
        raise InputError(
            tok.path,
            f"tokenizer lacks the tool tokens {', '.join(missing)} (import the model again without --keep-vocab)",
        )

    if (folder / ADAPTER_CONFIG).exists():
        # merged: a plain model again, as fast as the base (same logits as base + adapter)
        model = load_model_with_adapter(folder, device=device, merge=True)
    else:
        model = load_model(folder, device=device)  # InputError when there are no weights
    if tok.vocab_size > model.config.vocab_size:
        raise InputError(
            folder,
            f"model vocab_size {model.config.vocab_size} < tokenizer's {tok.vocab_size}: wrong tokenizer?",
        )
    model.requires_grad_(False)  # inference: no autograd state, and the decode step caches safely
    return model.eval(), tok


def precast_for_autocast(model: torch.nn.Module, dtype: torch.dtype | None) -> torch.nn.Module:
    """Store an inference-only model's matrices in the autocast dtype, once.

    Autocast casts every fp32 weight to bf16 on every call: for SmolLM2 that is 135M weights
    copied per forward pass (50 ms of a 2-prompt prefill's 170 ms on the AMD EPYC VM). A matrix
    stored in bf16 is what autocast would have made of it, so the outputs are the same; norms and
    embeddings stay fp32. A head tied to the embeddings gets its own bf16 copy (the embedding
    stays fp32). Only for a frozen model: a model that trains keeps fp32 weights.
    """
    if dtype is None:
        return model
    if any(p.requires_grad for p in model.parameters()):
        raise ValueError("precast_for_autocast is for frozen, inference-only models")
    head = getattr(model, "lm_head", None)
    embed = getattr(model, "embed_tokens", None)
    if head is not None and embed is not None and head.weight is embed.weight:
        head.weight = torch.nn.Parameter(embed.weight.detach().to(dtype), requires_grad=False)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data = module.weight.data.to(dtype)
    return model


def stop_ids(tok: TokenizerLike) -> set[int]:
    """Ids that end an assistant turn: `<|end|>` (an imported model's `<|im_end|>`...), and
    end-of-text for models that drift."""
    return set(tok.stop_ids)


def make_engine(
    model: torch.nn.Module,
    tok: TokenizerLike,
    tools: bool = True,
    python: bool = False,
    max_batch: int = 16,
    max_len: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    tool_timeout_s: float = 5.0,
    int8_decode: bool = False,
) -> Engine:
    """An Engine that stops at end-of-turn and, with `tools`, runs the calculator (and the python
    sandbox with `python`) on every `<|tool_call|>...<|tool_call_end|>` span the model writes."""
    hook = None
    if tools:
        hook = make_tool_hook(tok, ToolRegistry(python=python, timeout_s=tool_timeout_s))
    return Engine(
        model,
        eos_ids=stop_ids(tok),
        tool_hook=hook,
        tool_call_id=tok.token_id(TOOL_CALL),
        tool_call_end_id=tok.token_id(TOOL_CALL_END),
        max_batch=max_batch,
        max_len=max_len,
        autocast_dtype=autocast_dtype,
        int8_decode=int8_decode,
    )

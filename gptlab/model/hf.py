"""Export to a Hugging Face `LlamaForCausalLM` folder, and the name table import shares (hf_import.py).

Our parameter names are Llama's minus the `model.` prefix (`layers.0.self_attn.q_proj.weight`
<-> `model.layers.0.self_attn.q_proj.weight`; `lm_head.weight` is the same on both sides), and
our RoPE uses the same rotate-half convention, so export is a rename plus a `config.json`:
no weight is permuted. The exported folder loads with
`LlamaForCausalLM.from_pretrained(folder)` and gives our logits (tests/test_export_hf.py), and
llama.cpp's `convert_hf_to_gguf.py` can read it.

Folder written by `export_hf`:
    model.safetensors        `model.`-prefixed names; `lm_head.weight` left out when tied
    config.json              LlamaConfig fields (both `rope_theta` and `rope_parameters`, and both
                             `torch_dtype` and `dtype`, so transformers 4.x and 5.x read it)
    generation_config.json   bos/eos/pad ids; `<|end|>` is an extra stop id for chat models
    tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja
                             copied from our tokenizer folder (those that exist)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from gptlab.errors import InputError
from gptlab.fileio import atomic_folder, atomic_write_json, read_json
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import load_model
from gptlab.model.weights import model_state_for_saving
from gptlab.tokenizer.special import END, ENDOFTEXT, PAD

HF_PREFIX = "model."
WEIGHTS = "model.safetensors"
# The tokenizer helper writes these into runs/<run>/tokenizer/; tokenizer.json is the one that
# matters (the vocabulary and merges), the rest tell AutoTokenizer the class and special tokens.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def hf_name(name: str) -> str:
    """Our parameter name -> Llama's: the one name table that export and both importers use
    (GGUF names are llama.cpp's table applied to these, see gguf_import.gguf_tensor_names).

    'layers.0.mlp.up_proj.weight' -> 'model.layers.0.mlp.up_proj.weight'; 'lm_head.weight' stays.
    """
    return name if name == "lm_head.weight" else HF_PREFIX + name


def gptlab_name(hf: str) -> str:
    """Llama's parameter name -> ours; inverse of `hf_name`."""
    return hf.removeprefix(HF_PREFIX)


def to_hf_state_dict(model: GPT, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Our state dict -> Llama names: prefix all but `lm_head.weight`; tied heads stored once.

    {'embed_tokens.weight': E, 'lm_head.weight': W} -> {'model.embed_tokens.weight': E, 'lm_head.weight': W}
    """
    state = model_state_for_saving(model)  # CPU, contiguous, tied lm_head dropped
    return {hf_name(k): v.to(dtype).contiguous() for k, v in state.items()}


def from_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Llama names -> ours: strip `model.`; inverse of `to_hf_state_dict`."""
    return {gptlab_name(k): v for k, v in state.items()}


def hf_config(
    cfg: ModelConfig,
    dtype: str = "float32",
    bos_id: int | None = None,
    eos_id: int | None = None,
    pad_id: int | None = None,
) -> dict[str, Any]:
    """The `config.json` of a LlamaForCausalLM equal to our model."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        # transformers < 5 and llama.cpp read `rope_theta`; transformers >= 5 reads `rope_parameters`.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "use_cache": True,
        "torch_dtype": dtype,  # transformers < 5
        "dtype": dtype,  # transformers >= 5
    }


def tokenizer_ids(tokenizer_json: Path) -> tuple[dict[str, int], int]:
    """(special token text -> id, number of ids) from a Hugging Face `tokenizer.json`."""
    try:
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(tokenizer_json, f"invalid JSON: {e.msg}", line=e.lineno) from None
    added = [t for t in data.get("added_tokens", []) if "content" in t and "id" in t]
    ids = [int(i) for i in data.get("model", {}).get("vocab", {}).values()]
    ids += [int(t["id"]) for t in added]
    return {t["content"]: int(t["id"]) for t in added}, max(ids, default=-1) + 1


def export_hf(
    src: str | Path,
    dst: str | Path,
    tokenizer_dir: str | Path | None = None,
    dtype: str = "float32",
    include_tokenizer: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the stage folder `src` (model.safetensors + config.json) as a Hugging Face folder `dst`.

    `tokenizer_dir` defaults to the stage's sibling `tokenizer/` (runs/x/base -> runs/x/tokenizer).
    Everything is written into a temporary folder beside `dst` and renamed at the end, so `dst`
    is either absent, the old folder, or complete.
    """
    src, dst = Path(src), Path(dst)
    if dtype not in DTYPES:
        raise InputError(None, f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if dst.exists() and not overwrite and (not dst.is_dir() or any(dst.iterdir())):
        raise InputError(dst, "already exists and is not empty; pass --force to replace it")
    model = load_model(src)  # raises InputError for a missing or mismatched stage folder
    ids: dict[str, int] = {}
    tok_files: list[Path] = []
    if include_tokenizer:
        tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else src.parent / "tokenizer"
        ids, tok_files = _tokenizer_for(model, tok_dir)
    with atomic_folder(dst) as tmp:
        _write_hf_folder(tmp, model, dtype, ids, tok_files)
    return dst


def _tokenizer_for(model: GPT, tok_dir: Path) -> tuple[dict[str, int], list[Path]]:
    """The tokenizer's special ids and the files to copy, checked against the model's vocabulary."""
    tok_json = tok_dir / "tokenizer.json"
    if not tok_json.exists():
        raise InputError(
            tok_json,
            "file not found; write it with `gptlab tokenizer train`, pass --tokenizer DIR, "
            "or --no-tokenizer to export the weights alone",
        )
    ids, n_tok = tokenizer_ids(tok_json)
    if n_tok > model.config.vocab_size:
        raise InputError(
            tok_json,
            f"tokenizer has {n_tok} ids but the model's vocab_size is {model.config.vocab_size}",
        )
    return ids, [tok_dir / name for name in TOKENIZER_FILES if (tok_dir / name).exists()]


def _write_hf_folder(
    tmp: Path, model: GPT, dtype: str, ids: dict[str, int], tok_files: list[Path]
) -> None:
    """Weights, config.json, generation_config.json and the tokenizer files into `tmp`."""
    eot, pad, end = ids.get(ENDOFTEXT), ids.get(PAD), ids.get(END)
    save_file(
        to_hf_state_dict(model, DTYPES[dtype]),
        str(tmp / WEIGHTS),
        metadata={"format": "pt"},  # transformers refuses safetensors files without it
    )
    # Documents start and end with <|endoftext|>, so it is both BOS and EOS of a base model.
    atomic_write_json(tmp / "config.json", hf_config(model.config, dtype, eot, eot, pad))
    stops = [i for i in (eot, end) if i is not None]
    gen = {
        "bos_token_id": eot,
        "eos_token_id": stops if len(stops) > 1 else (stops[0] if stops else None),
        "pad_token_id": pad,
        "do_sample": True,
        "temperature": 0.8,
        "top_k": 50,
    }
    atomic_write_json(tmp / "generation_config.json", gen)
    for f in tok_files:
        # The tokenizer's context length is the model's, not the tokenizer's default.
        if f.name == "tokenizer_config.json":
            tok_cfg = read_json(f)
            tok_cfg["model_max_length"] = model.config.max_seq_len
            atomic_write_json(tmp / f.name, tok_cfg)
        else:
            shutil.copyfile(f, tmp / f.name)

"""Import a local GGUF file of the Llama family: config, dequantized fp32 weights, tokenizer.

GGUF is llama.cpp's format. The `gguf` package (llama.cpp's own reader) reads it and
`gguf.quants.dequantize` turns every tensor (Q4_1, Q8_0, F16...) into fp32. Two things differ
from a Hugging Face folder:

- Tensor names are llama.cpp's (`blk.0.attn_q.weight`). We map them with llama.cpp's own table
  (`gguf.get_tensor_name_map`) applied to `hf.hf_name`, so there is one name table for HF and GGUF.
- llama.cpp's converter permutes the rows of Q and K so its rope can rotate adjacent pairs;
  our rope (like transformers') rotates halves. `unpermute_qk` undoes it exactly as transformers'
  GGUF loader does (`permute_qk` is the converter's own, for writers and tests).

The tokenizer is rebuilt from the metadata (tokenizer.ggml.tokens/merges/token_type, the special
ids, tokenizer.chat_template) in gguf_tokenizer.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from gptlab.errors import InputError
from gptlab.model.config import ModelConfig
from gptlab.model.gguf_tokenizer import tokenizer_files
from gptlab.model.hf import hf_name
from gptlab.model.hf_import import Imported, check_state, expected_shapes

ARCHITECTURES = ("llama",)
# llama.<key> -> ModelConfig field; the required ones first.
REQUIRED_KEYS = {
    "block_count": "n_layer",
    "embedding_length": "n_embd",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "n_head",
}
OPTIONAL_KEYS = {
    "attention.head_count_kv": "n_kv_head",
    "context_length": "max_seq_len",
    "rope.freq_base": "rope_theta",
    "attention.layer_norm_rms_epsilon": "norm_eps",
    "vocab_size": "vocab_size",
}


def open_gguf(path: str | Path) -> gguf.GGUFReader:
    """The reader for `path`; a missing, truncated or foreign file is one InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise InputError(path, "not a GGUF file (it does not start with the bytes 'GGUF')")
    try:
        return gguf.GGUFReader(path)
    except (ValueError, IndexError, OSError, KeyError) as e:
        # The reader memory-maps the file and fails on whichever array runs past its end.
        raise InputError(path, f"truncated or corrupt GGUF file ({e})") from None


def field_value(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    """A metadata value as Python (str, int, float, list), or `default` when absent."""
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def config_from_gguf(reader: gguf.GGUFReader, where: Path) -> ModelConfig:
    arch = field_value(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise InputError(where, f"general.architecture: {arch} is not supported (Llama family only: llama)")
    values: dict[str, Any] = {}
    for key, name in {**REQUIRED_KEYS, **OPTIONAL_KEYS}.items():
        v = field_value(reader, f"llama.{key}")
        if v is None and key in REQUIRED_KEYS:
            raise InputError(where, f"llama.{key}: missing field")
        if v is not None and (isinstance(v, (str, list, bool)) or v <= 0):
            raise InputError(where, f"llama.{key}: expected a positive number, got {v!r}")
        if v is not None:
            values[name] = v
    for key in ("rope.scaling.type", "attention.sliding_window"):
        v = field_value(reader, f"llama.{key}")
        if v not in (None, "none", 0):
            raise InputError(where, f"llama.{key}: {v} is not supported (plain rope, full attention only)")
    values.setdefault("vocab_size", len(field_value(reader, "tokenizer.ggml.tokens", [])))
    values.setdefault("n_kv_head", values["n_head"])
    ints = ("n_layer", "n_embd", "intermediate_size", "n_head", "n_kv_head", "max_seq_len", "vocab_size")
    values = {k: int(v) if k in ints else float(v) for k, v in values.items()}
    rope_dims = field_value(reader, "llama.rope.dimension_count")
    if rope_dims is not None and rope_dims != values["n_embd"] // values["n_head"]:
        raise InputError(where, f"llama.rope.dimension_count: {rope_dims} is not the head dimension (partial rope is not supported)")
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    try:
        return ModelConfig(**values, tie_embeddings=tied)
    except ValueError as e:
        raise InputError(where, str(e)) from None


def gguf_tensor_names(n_layer: int) -> dict[str, str]:
    """{our name: llama.cpp's name} for a Llama of `n_layer` blocks ('norm.weight' -> 'output_norm.weight')."""
    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    cfg = ModelConfig(vocab_size=8, n_layer=n_layer, n_embd=8, n_head=2, n_kv_head=2, intermediate_size=8)
    out = {}
    for ours in expected_shapes(cfg):
        name = table.get_name(hf_name(ours), try_suffixes=(".weight",))
        if name is None:  # a parameter llama.cpp has no name for: a bug here, not bad input
            raise KeyError(f"no GGUF name for {ours}")
        out[ours] = name
    return out


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter: rotate-half row order -> interleaved pairs (per head)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of `permute_qk`, as transformers' GGUF loader does it."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_tensors(reader: gguf.GGUFReader, cfg: ModelConfig, where: Path) -> dict[str, torch.Tensor]:
    """Every tensor dequantized to fp32, renamed to ours, Q/K rows put back in rotate-half order."""
    to_ours = {v: k for k, v in gguf_tensor_names(cfg.n_layer).items()}
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if t.name not in to_ours:
            raise InputError(where, f"{t.name}: unexpected tensor for a Llama model")
        try:
            w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        except (NotImplementedError, ValueError) as e:
            raise InputError(where, f"{t.name}: cannot dequantize {t.tensor_type.name} ({e})") from None
        w = w.reshape(tuple(int(d) for d in reversed(t.shape)))  # GGUF lists dims innermost first
        ours = to_ours[t.name]
        if ours.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.n_head if ours.endswith("q_proj.weight") else cfg.n_kv_head
            if w.ndim != 2 or w.shape[0] % (2 * heads):
                raise InputError(where, f"{t.name}: shape {w.shape} does not fit {heads} heads")
            w = unpermute_qk(w, heads)
        state[ours] = torch.from_numpy(np.array(w, dtype=np.float32, order="C"))  # a writable copy of the mmap
    if cfg.tie_embeddings and "embed_tokens.weight" in state:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    check_state(cfg, state, where, {v: k for k, v in to_ours.items()})
    return state


def import_gguf(path: str | Path) -> Imported:
    """Read a Llama-family GGUF file: config from llama.* keys, weights dequantized, tokenizer rebuilt."""
    path = Path(path)
    reader = open_gguf(path)
    cfg = config_from_gguf(reader, path)
    tokenizer = tokenizer_files(reader, path, cfg)
    state = read_tensors(reader, cfg, path)
    types = sorted({t.tensor_type.name for t in reader.tensors})
    provenance = {
        "format": "gguf",
        "architecture": "llama",
        "name": field_value(reader, "general.name"),
        "tensors": len(reader.tensors),
        "tensor_types": types,
        "dequantized_to": "float32",
        "qk_unpermuted": True,
    }
    return Imported(cfg, state, tokenizer, provenance)

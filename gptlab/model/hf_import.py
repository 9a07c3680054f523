"""Import a local Hugging Face folder of the Llama family as gptlab's config, weights and tokenizer.

Accepted: `LlamaForCausalLM` (model_type llama) and `MistralForCausalLM` without a sliding window
(then the same math). Everything our GPT cannot represent is refused with one `InputError`
naming the file and the field (`config.json: architectures: Qwen2ForCausalLM is not supported
(Llama family only)`); so is any field we do not know, since silently ignoring it could change
the model. Weights are renamed with `hf.gptlab_name` (the table export uses) and checked tensor
by tensor against the config before anything is written.

Also here, shared with gguf_import.py: `Imported` (what an importer returns) and
`check_state` (names and shapes against the config).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from gptlab.errors import InputError
from gptlab.fileio import read_json
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.hf import gptlab_name, tokenizer_ids

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"  # sharded checkpoints
ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
MODEL_TYPES = ("llama", "mistral")
# Fields that do not change the forward pass (bookkeeping, generation defaults, HF plumbing).
IGNORED_FIELDS = frozenset(
    ["_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range", "attention_dropout", "pretraining_tp", "output_attentions", "output_hidden_states", "return_dict", "id2label", "label2id", "problem_type", "chunk_size_feed_forward", "is_encoder_decoder", "is_llama_config", "transformers.js_config", "tokenizer_class"]
)
INT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings",
)  # fmt: skip
FLOAT_FIELDS = ("rope_theta", "rms_norm_eps")
BOOL_FIELDS = ("tie_word_embeddings", "attention_bias", "mlp_bias", "rope_interleaved")
OTHER_FIELDS = ("architectures", "model_type", "hidden_act", "rope_parameters", "rope_scaling", "sliding_window")
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
KNOWN_FIELDS = IGNORED_FIELDS | set(INT_FIELDS + FLOAT_FIELDS + BOOL_FIELDS + OTHER_FIELDS)
# Copied into the sibling tokenizer folder when present (tokenizer.json is required).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class Imported:
    """A model read from outside: what `gptlab import` writes as a stage folder + tokenizer folder."""

    config: ModelConfig
    state: dict[str, torch.Tensor]  # gptlab names, fp32, lm_head.weight present even when tied
    tokenizer: dict[str, str]  # file name -> text, for the sibling tokenizer folder
    provenance: dict[str, Any] = field(default_factory=dict)  # goes into import.json


def _unsupported(where: Path, key: str, value: Any, why: str) -> InputError:
    return InputError(where, f"{key}: {value} is not supported ({why})")


def _check_types(hf: dict[str, Any], where: Path) -> None:
    """Unknown fields, missing required ones and wrong JSON types, each named."""
    for key in hf:
        if key not in KNOWN_FIELDS:
            raise InputError(where, f"{key}: unknown field; gptlab imports Llama-family configs only")
    for key in REQUIRED:
        if key not in hf:
            raise InputError(where, f"{key}: missing field")
    for key in INT_FIELDS:
        v = hf.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise InputError(where, f"{key}: expected a positive integer, got {v!r}")
    for key in FLOAT_FIELDS:
        v = hf.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise InputError(where, f"{key}: expected a number, got {v!r}")
    for key in BOOL_FIELDS:
        v = hf.get(key)
        if v is not None and not isinstance(v, bool):
            raise InputError(where, f"{key}: expected true or false, got {v!r}")


def _check_family(hf: dict[str, Any], where: Path) -> None:
    """Refuse what is not the Llama math: other architectures, biases, scaled or interleaved rope."""
    archs = hf.get("architectures") or ["LlamaForCausalLM"]
    if not isinstance(archs, list) or len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise _unsupported(where, "architectures", archs, "Llama family only: " + ", ".join(ARCHITECTURES))
    if hf.get("model_type", "llama") not in MODEL_TYPES:
        raise _unsupported(where, "model_type", hf["model_type"], "llama family only: llama or mistral")
    if hf.get("hidden_act", "silu") != "silu":
        raise _unsupported(where, "hidden_act", hf["hidden_act"], "silu only")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            raise _unsupported(where, key, "true", "Llama without biases only")
    if hf.get("rope_interleaved"):
        raise _unsupported(where, "rope_interleaved", "true", "rotate-half rope only")
    if hf.get("sliding_window") is not None:
        raise _unsupported(where, "sliding_window", hf["sliding_window"], "full attention only")
    for key in ("rope_parameters", "rope_scaling"):
        rope = hf.get(key) or {}
        if not isinstance(rope, dict):
            raise InputError(where, f"{key}: expected an object, got {rope!r}")
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind != "default":
            raise _unsupported(where, key, f"rope_type {kind}", "plain rope only, no scaling")


def config_from_hf(hf: Any, where: Path) -> ModelConfig:
    """A Llama-family `config.json` -> ModelConfig; every refusal names `where` and the field."""
    if not isinstance(hf, dict):
        raise InputError(where, "expected a JSON object")
    _check_types(hf, where)
    _check_family(hf, where)
    n_embd, n_head = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or n_embd // n_head
    if head_dim * n_head != n_embd:
        raise InputError(
            where, f"head_dim: {head_dim} * num_attention_heads {n_head} != hidden_size {n_embd}"
        )
    rope = hf.get("rope_parameters") or {}
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"],
            n_layer=hf["num_hidden_layers"],
            n_embd=n_embd,
            n_head=n_head,
            n_kv_head=hf.get("num_key_value_heads") or n_head,
            intermediate_size=hf["intermediate_size"],
            max_seq_len=hf.get("max_position_embeddings") or 2048,
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
    except ValueError as e:  # ModelConfig's own checks (heads divide evenly, even head_dim)
        raise InputError(where, str(e)) from None


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter our GPT has for `cfg`, with its shape (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = GPT(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_state(cfg: ModelConfig, state: dict[str, torch.Tensor], where: str | Path, names: dict[str, str] | None = None) -> None:
    """Names and shapes of `state` against `cfg`; `names` maps our names back to the file's for errors."""
    shapes = expected_shapes(cfg)
    spell = (names or {}).get
    for k, v in state.items():
        if k not in shapes:
            raise InputError(where, f"{spell(k, k)}: unexpected tensor for a Llama model of this config")
        if tuple(v.shape) != shapes[k]:
            raise InputError(
                where, f"{spell(k, k)}: shape {tuple(v.shape)} does not match the config's {shapes[k]}"
            )
    missing = [k for k in shapes if k not in state]
    if missing:
        raise InputError(where, f"{spell(missing[0], missing[0])}: missing tensor ({len(missing)} missing)")


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise InputError(path, f"not a readable safetensors file: {e}") from None


def load_hf_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The Llama-named tensors of a folder (one file or shards listed by the index), and their file."""
    if (folder / WEIGHTS).exists():
        return _load(folder / WEIGHTS), folder / WEIGHTS
    index_path = folder / WEIGHTS_INDEX
    if index_path.exists():
        weight_map = read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise InputError(index_path, "weight_map: missing or not an object")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).exists():
                raise InputError(folder / shard, f"file not found (listed in {WEIGHTS_INDEX})")
            state.update(_load(folder / shard))
        return state, index_path
    raise InputError(folder, f"no {WEIGHTS} or {WEIGHTS_INDEX} here; is this a Hugging Face model folder?")


def state_from_hf(cfg: ModelConfig, hf_state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    """Llama names -> ours, fp32, checked against `cfg`; a tied head is the embedding."""
    state = {gptlab_name(k): v.to(torch.float32) for k, v in hf_state.items()}
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}  # old files
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)  # tied: HF may store both
        if "embed_tokens.weight" in state:
            state["lm_head.weight"] = state["embed_tokens.weight"]
    hf_names = {gptlab_name(k): k for k in hf_state}
    hf_names.setdefault("lm_head.weight", "lm_head.weight")
    check_state(cfg, state, where, hf_names)
    return state


def hf_tokenizer_files(folder: Path, vocab_size: int) -> dict[str, str]:
    """The tokenizer files to carry over; `chat_template.jinja` is folded into tokenizer_config.json."""
    tok_json = folder / "tokenizer.json"
    if not tok_json.exists():
        raise InputError(tok_json, "file not found: a model folder without its tokenizer cannot be imported")
    _, n_ids = tokenizer_ids(tok_json)  # raises InputError on broken JSON
    if n_ids > vocab_size:
        raise InputError(tok_json, f"tokenizer has {n_ids} ids but config.json's vocab_size is {vocab_size}")
    files = {name: (folder / name).read_text(encoding="utf-8") for name in TOKENIZER_FILES if (folder / name).exists()}
    tok_cfg = read_json(folder / "tokenizer_config.json") if "tokenizer_config.json" in files else {}
    if not isinstance(tok_cfg, dict):
        raise InputError(folder / "tokenizer_config.json", "expected a JSON object")
    if "chat_template" not in tok_cfg and (folder / "chat_template.jinja").exists():
        tok_cfg["chat_template"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    files["tokenizer_config.json"] = json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n"
    if "special_tokens_map.json" not in files:
        keys = ("bos_token", "eos_token", "unk_token", "pad_token")
        special = {k: tok_cfg[k] for k in keys if tok_cfg.get(k) is not None}
        files["special_tokens_map.json"] = json.dumps(special, indent=2, ensure_ascii=False) + "\n"
    return files


def import_hf_folder(path: str | Path) -> Imported:
    """Read a Hugging Face Llama folder: config.json, safetensors (sharded too), tokenizer."""
    folder = Path(path)
    cfg_path = folder / "config.json"
    hf = read_json(cfg_path)
    cfg = config_from_hf(hf, cfg_path)
    tokenizer = hf_tokenizer_files(folder, cfg.vocab_size)
    hf_state, weights_file = load_hf_weights(folder)
    state = state_from_hf(cfg, hf_state, weights_file)
    provenance = {
        "format": "huggingface",
        "architecture": (hf.get("architectures") or ["LlamaForCausalLM"])[0],
        "tensors": len(hf_state),
    }
    return Imported(cfg, state, tokenizer, provenance)


def load_hf_folder(path: str | Path, device: str | torch.device = "cpu") -> GPT:
    """Our GPT from a Hugging Face Llama folder (weights only; the tokenizer is not needed)."""
    folder = Path(path)
    cfg = config_from_hf(read_json(folder / "config.json"), folder / "config.json")
    hf_state, weights_file = load_hf_weights(folder)
    model = GPT(cfg)
    model.load_state_dict(state_from_hf(cfg, hf_state, weights_file))
    return model.to(device)

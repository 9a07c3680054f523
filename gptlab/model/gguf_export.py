"""Write a stage folder as one GGUF file: what llama.cpp, ollama and transformers' GGUF loader run.

    export_gguf("runs/tiny/base", "out/tiny.gguf", gguf_type="q8_0")

The file is a llama.cpp "llama" model, written the way llama.cpp's `convert_hf_to_gguf.py` writes
a LlamaForCausalLM (our parameters are Llama's, `gptlab.model.hf`):
- metadata `llama.*`: context length, widths, block count, head counts, RoPE base, RMS norm eps;
- tensors under llama.cpp's names (`token_embd`, `blk.N.attn_q`, ..., `output_norm`, `output`;
  `output` left out when the embeddings are tied, which is how readers tell a tied model);
- Q and K rows permuted from the rotate-half RoPE layout to llama.cpp's interleaved one
  (`gguf_import.permute_qk`; readers undo it);
- tensor types: f32, bf16 or q8_0 for the matrices; norms always f32; a q8_0 matrix whose rows
  are not a multiple of 32 stays f32 (llama.cpp's converter falls back the same way).

The tokenizer goes in as llama.cpp's byte-level BPE ("gpt2") metadata: tokens in GPT-2's byte
alphabet, their types, merges, special ids, the pre-tokenizer name (the split regex), and the
chat template. Two sources, by what the tokenizer folder holds:
- gptlab's own BPE (`tokenizer.tiktoken`): tokens and merges from `hf_export.vocab_and_merges`,
  the template from `chat_template`; BOS = EOS = `<|endoftext|>`, end of turn `<|end|>`;
- an imported model's Hugging Face `tokenizer.json` (+ `tokenizer_config.json`): read as is.
`add_bos_token` is false as in our Hugging Face export: documents and the chat template write
`<|endoftext|>` themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from gptlab.errors import InputError
from gptlab.fileio import atomic_folder, atomic_path
from gptlab.model.config import ModelConfig
from gptlab.model.gguf_import import gguf_tensor_names, permute_qk
from gptlab.model.gpt import GPT
from gptlab.model.io import load_model
from gptlab.tokenizer.bpe import TIKTOKEN_FILE, Tokenizer
from gptlab.tokenizer.chat_template import chat_template
from gptlab.tokenizer.hf_export import vocab_and_merges
from gptlab.tokenizer.special import END, PAD
from gptlab.tokenizer.vocab import GPT4_PATTERN

GGUF_FILE = "model.gguf"  # the file's name when --out is a folder
Q = gguf.GGMLQuantizationType
# --gguf-type -> (type of the matrices, the file type llama.cpp reports)
GGUF_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "bf16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
# Llama 3's split regex (also Hugging Face's spelling of llama.cpp's "llama-bpe")
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
# split regex -> llama.cpp pre-tokenizer that splits the same way. GPT-4's pattern and Llama 3's
# differ only in spelling (possessive quantifiers, `'(?i:...)`): they split every text alike.
PRE_TOKENIZERS: dict[str, str] = {
    GPT4_PATTERN: "llama-bpe",
    LLAMA3_PATTERN: "llama-bpe",
    QWEN2_PATTERN: "qwen2",
}
T = gguf.TokenType


@dataclass
class GGUFVocab:
    """A byte-level BPE tokenizer as llama.cpp's `tokenizer.ggml.*` metadata."""

    tokens: list[str]  # id -> token, in GPT-2's byte alphabet (special tokens as their text)
    token_types: list[int]  # gguf.TokenType per id
    merges: list[str]  # "left right", best first
    pre: str  # llama.cpp pre-tokenizer name (which split regex)
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    eot_id: int | None = None  # end of turn (llama.cpp stops on it in chat)
    add_bos: bool = False
    chat_template: str | None = None

    def pad_to(self, size: int, where: Path) -> None:
        """Fill the ids the model has beyond the tokenizer with unused `[PADn]` tokens."""
        if len(self.tokens) > size:
            raise InputError(
                where, f"tokenizer has {len(self.tokens)} ids but the model's vocab_size is {size}"
            )
        for i in range(len(self.tokens), size):
            self.tokens.append(f"[PAD{i}]")
            self.token_types.append(T.UNUSED)


def export_gguf(
    src: str | Path,
    dst: str | Path,
    tokenizer_dir: str | Path | None = None,
    gguf_type: str = "f32",
    overwrite: bool = False,
) -> Path:
    """Write the stage folder `src` as a GGUF; returns the file written.

    `dst` ending in `.gguf` is the file; anything else is a folder that gets `model.gguf`.
    `tokenizer_dir` defaults to the stage's sibling `tokenizer/` (runs/x/base -> runs/x/tokenizer).
    The file (or folder) is written beside its destination and renamed at the end.
    """
    src, dst = Path(src), Path(dst)
    if gguf_type not in GGUF_TYPES:
        raise InputError(None, f"unknown GGUF type {gguf_type!r}; choose from {', '.join(GGUF_TYPES)}")
    if dst.exists() and not overwrite and (not dst.is_dir() or any(dst.iterdir())):
        raise InputError(dst, "already exists and is not empty; pass --force to replace it")
    if dst.suffix != ".gguf" and dst.is_file():
        raise InputError(dst, "is a file; name the output `<name>.gguf` or a folder")
    model = load_model(src)  # raises InputError for a missing or mismatched stage folder
    tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else src.parent / "tokenizer"
    vocab = load_vocab(tok_dir)
    vocab.pad_to(model.config.vocab_size, tok_dir)
    name = src.resolve().parent.name or "gptlab"
    if dst.suffix == ".gguf":
        with atomic_path(dst) as tmp:
            write_gguf(tmp, model, vocab, gguf_type, name)
        return dst
    with atomic_folder(dst) as tmp:
        write_gguf(tmp / GGUF_FILE, model, vocab, gguf_type, name)
    return dst / GGUF_FILE


def write_gguf(path: Path, model: GPT, vocab: GGUFVocab, gguf_type: str, name: str) -> None:
    """Metadata, tokenizer and tensors of `model` into the GGUF file `path`."""
    qtype, file_type = GGUF_TYPES[gguf_type]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    _add_hyperparameters(writer, model.config)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_vocab(writer, vocab)
    for tensor_name, data in llama_tensors(model):
        _add_tensor(writer, tensor_name, data, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_hyperparameters(writer: gguf.GGUFWriter, cfg: ModelConfig) -> None:
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_kv_head)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)


def _add_vocab(writer: gguf.GGUFWriter, vocab: GGUFVocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types([int(t) for t in vocab.token_types])
    writer.add_token_merges(vocab.merges)
    for add, token_id in [
        (writer.add_bos_token_id, vocab.bos_id),
        (writer.add_eos_token_id, vocab.eos_id),
        (writer.add_pad_token_id, vocab.pad_id),
        (writer.add_eot_token_id, vocab.eot_id),
    ]:
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(False)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def _add_tensor(writer: gguf.GGUFWriter, name: str, data: np.ndarray, qtype: Q) -> None:
    """f32 for vectors (norms) and rows that do not fill quantization blocks, else `qtype`."""
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if data.ndim == 1 or qtype == Q.F32 or data.shape[-1] % block:
        writer.add_tensor(name, data.astype(np.float32))
        return
    # the writer derives the element shape from the packed bytes' shape and `raw_dtype`
    writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def llama_tensors(model: GPT) -> list[tuple[str, np.ndarray]]:
    """(llama.cpp name, fp32 array) for every parameter; `output` only when not tied. The names
    and the Q/K row order are the importer's (gptlab.model.gguf_import), applied the other way."""
    cfg = model.config
    names = gguf_tensor_names(cfg.n_layer)
    out = []
    for key, t in model.state_dict().items():
        if key == "lm_head.weight" and cfg.tie_embeddings:
            continue
        w = t.detach().float().cpu().contiguous().numpy()
        if key.endswith("q_proj.weight"):
            w = permute_qk(w, cfg.n_head)
        elif key.endswith("k_proj.weight"):
            w = permute_qk(w, cfg.n_kv_head)
        out.append((names[key], np.ascontiguousarray(w)))
    return out


def load_vocab(tok_dir: Path) -> GGUFVocab:
    """The GGUF tokenizer of a tokenizer folder: gptlab's BPE if `tokenizer.tiktoken` is there,
    else the Hugging Face `tokenizer.json` of an imported model."""
    if (tok_dir / TIKTOKEN_FILE).exists():
        return vocab_from_gptlab(Tokenizer.load(tok_dir))
    if (tok_dir / "tokenizer.json").exists():
        return vocab_from_tokenizer_json(tok_dir)
    raise InputError(
        tok_dir,
        f"no {TIKTOKEN_FILE} or tokenizer.json here; a GGUF needs its tokenizer "
        "(pass --tokenizer DIR)",
    )


def vocab_from_gptlab(tok: Tokenizer) -> GGUFVocab:
    """gptlab's BPE: the vocabulary and merges our Hugging Face export writes, specials as control."""
    pre = PRE_TOKENIZERS.get(tok.pattern)
    if pre is None:
        raise InputError(
            tok.path,
            f"split pattern {tok.pattern!r} has no llama.cpp pre-tokenizer; only the GPT-4 pattern "
            "(`gptlab tokenizer train --pattern gpt4`) exports to GGUF",
        )
    vocab, merges = vocab_and_merges(tok.mergeable_ranks)
    tokens = [""] * tok.vocab_size
    types = [T.NORMAL] * tok.vocab_size
    for text, i in vocab.items():
        tokens[i] = text
    for text, i in tok.special_ids.items():
        tokens[i], types[i] = text, T.CONTROL
    return GGUFVocab(
        tokens=tokens,
        token_types=types,
        merges=[f"{left} {right}" for left, right in merges],
        pre=pre,
        bos_id=tok.eot_id,
        eos_id=tok.eot_id,
        pad_id=tok.special_ids.get(PAD, tok.eot_id),
        eot_id=tok.special_ids.get(END),
        chat_template=chat_template(),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON: {e.msg}", line=e.lineno) from None


def vocab_from_tokenizer_json(tok_dir: Path) -> GGUFVocab:
    """An imported model's byte-level BPE `tokenizer.json`, with ids, specials and chat template
    from `tokenizer_config.json` (or `chat_template.jinja`)."""
    path = tok_dir / "tokenizer.json"
    data = _read_json(path)
    bpe = data.get("model") or {}
    if bpe.get("type") != "BPE" or not isinstance(bpe.get("vocab"), dict):
        raise InputError(path, f"model.type {bpe.get('type')!r}: only BPE exports to GGUF")
    ids = {str(k): int(v) for k, v in bpe["vocab"].items()}
    added = [t for t in data.get("added_tokens") or [] if "content" in t and "id" in t]
    size = max([*ids.values(), *(int(t["id"]) for t in added)], default=-1) + 1
    tokens, types = [f"[PAD{i}]" for i in range(size)], [T.UNUSED] * size
    for text, i in ids.items():
        tokens[i], types[i] = text, T.NORMAL
    for t in added:
        i = int(t["id"])
        tokens[i], types[i] = t["content"], T.CONTROL if t.get("special") else T.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe.get("merges") or []]
    cfg_path = tok_dir / "tokenizer_config.json"
    cfg = _read_json(cfg_path) if cfg_path.exists() else {}
    index = {text: i for i, text in enumerate(tokens)}
    vocab = GGUFVocab(
        tokens=tokens,
        token_types=types,
        merges=merges,
        pre=_pre_tokenizer_name(data.get("pre_tokenizer"), path),
        add_bos=bool(cfg.get("add_bos_token", False)),
        chat_template=_chat_template(cfg, tok_dir),
    )
    vocab.bos_id, vocab.eos_id, vocab.pad_id = (
        _special_id(cfg.get(key), index, cfg_path) for key in ("bos_token", "eos_token", "pad_token")
    )
    return vocab


def _special_id(token: Any, index: dict[str, int], where: Path) -> int | None:
    """The id of a tokenizer_config special token (a string or {"content": ...}); None if unset."""
    text = token.get("content") if isinstance(token, dict) else token
    if text is None:
        return None
    if text not in index:
        raise InputError(where, f"special token {text!r} is not in tokenizer.json")
    return index[text]


def _chat_template(cfg: dict[str, Any], tok_dir: Path) -> str | None:
    """tokenizer_config's `chat_template` (a string, or named templates: the default), else the
    `chat_template.jinja` file transformers 5 writes beside it."""
    tpl = cfg.get("chat_template")
    if isinstance(tpl, list):
        named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
        tpl = named.get("default")
    if not tpl and (tok_dir / "chat_template.jinja").exists():
        tpl = (tok_dir / "chat_template.jinja").read_text(encoding="utf-8")
    return tpl or None


def _pre_tokenizer_name(pre: dict[str, Any] | None, where: Path) -> str:
    """llama.cpp's name for a byte-level `tokenizer.json` pre-tokenizer; refuses the others."""
    steps = (pre or {}).get("pretokenizers") if (pre or {}).get("type") == "Sequence" else [pre]
    kinds = [(s or {}).get("type") for s in steps or []]
    last = (steps or [{}])[-1] or {}
    if kinds == ["ByteLevel"] and last.get("use_regex", True):
        return "gpt2"  # GPT-2's own regex
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and last.get(
        "use_regex", True
    ):
        return "smollm"  # SmolLM: single digits, then GPT-2's regex
    if kinds == ["Split", "ByteLevel"] and not last.get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex in PRE_TOKENIZERS:
            return PRE_TOKENIZERS[regex]
        raise InputError(where, f"pre_tokenizer split regex {regex!r} has no llama.cpp pre-tokenizer")
    raise InputError(
        where,
        f"pre_tokenizer {kinds or None} is not a byte-level BPE that llama.cpp knows "
        "(ByteLevel, Digits + ByteLevel, or Split + ByteLevel)",
    )

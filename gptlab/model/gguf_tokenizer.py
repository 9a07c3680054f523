"""Rebuild a GGUF file's tokenizer as Hugging Face `tokenizer.json` + `tokenizer_config.json`.

A GGUF has no tokenizer.json: it stores the vocabulary under llama.cpp's keys. For the byte-level
BPE of the Llama family (`tokenizer.ggml.model == "gpt2"`: SmolLM2, Llama 3, ...) that is all a
`tokenizers` BPE needs:

    tokenizer.ggml.tokens       the vocabulary, already spelled in the byte-to-unicode alphabet
    tokenizer.ggml.merges       "Ġ t" pairs, best first
    tokenizer.ggml.token_type   3 = control (a special token), 4 = user-defined (added, not special)
    tokenizer.ggml.pre          how llama.cpp splits text before BPE (PRE_TOKENIZERS below)
    tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token, tokenizer.chat_template

SentencePiece vocabularies (`tokenizer.ggml.model == "llama"`: Llama 2, TinyLlama) are refused
with a clear error for now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from gptlab.errors import InputError
from gptlab.model.config import ModelConfig

CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types
# llama.cpp's Llama 3 split (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_LLAMA3).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level(add_prefix_space: bool) -> pre_tokenizers.PreTokenizer:
    """GPT-2's split regex + byte-to-unicode: llama.cpp's default for gpt2 vocabularies."""
    return pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=True)


def _digits_then_byte_level(add_prefix_space: bool) -> pre_tokenizers.PreTokenizer:
    """Each digit on its own, then GPT-2's split (llama.cpp's smollm/starcoder pre type)."""
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), _byte_level(add_prefix_space)]
    )


def _llama3(add_prefix_space: bool) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False),
        ]
    )


# tokenizer.ggml.pre -> the splitting llama.cpp applies (unknown values fall back to GPT-2's).
PRE_TOKENIZERS = {
    "default": _byte_level,
    "gpt2": _byte_level,
    "smollm": _digits_then_byte_level,
    "starcoder": _digits_then_byte_level,
    "refact": _digits_then_byte_level,
    "llama-bpe": _llama3,
    "llama3": _llama3,
}


def _field(reader: gguf.GGUFReader, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def build_tokenizer(reader: gguf.GGUFReader, where: Path, vocab_size: int) -> Tokenizer:
    """The byte-level BPE the metadata describes, with control tokens as specials."""
    kind = _field(reader, "tokenizer.ggml.model")
    if kind is None:
        raise InputError(where, "tokenizer.ggml.model: missing field (the file holds no tokenizer)")
    if kind != "gpt2":
        raise InputError(where, f"tokenizer.ggml.model: {kind} is not supported (byte-level BPE 'gpt2' only)")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = _field(reader, "tokenizer.ggml.merges")
    if not tokens or merges is None:
        raise InputError(where, "tokenizer.ggml.tokens/merges: missing field")
    if len(tokens) > vocab_size:
        raise InputError(where, f"tokenizer.ggml.tokens: {len(tokens)} tokens but llama.vocab_size is {vocab_size}")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    prefix = bool(_field(reader, "tokenizer.ggml.add_space_prefix", False))
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    tok.pre_tokenizer = PRE_TOKENIZERS.get(pre, _byte_level)(prefix)
    tok.decoder = decoders.ByteLevel()
    types = _field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    tok.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t, k in zip(tokens, types) if k == CONTROL]
    )
    tok.add_tokens(
        [AddedToken(t, normalized=False, special=False) for t, k in zip(tokens, types) if k == USER_DEFINED]
    )
    bos_id = _field(reader, "tokenizer.ggml.bos_token_id")
    if _field(reader, "tokenizer.ggml.add_bos_token", False) and bos_id is not None:
        bos = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if tok.get_vocab_size() != len(tokens):
        raise InputError(where, "tokenizer.ggml.token_type: special tokens outside the vocabulary")
    return tok


def tokenizer_files(reader: gguf.GGUFReader, where: Path, cfg: ModelConfig) -> dict[str, str]:
    """{file name: text} for the sibling tokenizer folder."""
    tok = build_tokenizer(reader, where, cfg.vocab_size)
    tokens = _field(reader, "tokenizer.ggml.tokens")

    def name(key: str) -> str | None:
        i = _field(reader, f"tokenizer.ggml.{key}")
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    special = {
        "bos_token": name("bos_token_id"),
        "eos_token": name("eos_token_id"),
        "unk_token": name("unknown_token_id"),
        "pad_token": name("padding_token_id"),
    }
    special = {k: v for k, v in special.items() if v is not None}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False)),
        "model_max_length": cfg.max_seq_len,
        "clean_up_tokenization_spaces": False,
    }
    template = _field(reader, "tokenizer.chat_template")
    if template is not None:
        config["chat_template"] = template
    return {
        "tokenizer.json": tok.to_str(pretty=True),
        "tokenizer_config.json": _dump(config),
        "special_tokens_map.json": _dump(special),
    }


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"

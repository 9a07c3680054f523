"""Give an imported model gptlab's tool, reward and pad tokens: one tool protocol for every model.

gptlab's engine, server, RL rollouts and chat renderer frame a tool call as
`<|tool_call|>calculator: 12*7<|tool_call_end|>` and force the result in as
`<|tool_result|>84<|tool_result_end|>`; the reward model reads its scalar at `<|reward|>`. An
imported vocabulary (SmolLM2's 49152 tokens) has none of them, so `gptlab import` appends the
missing ones as special tokens and grows the embedding (and an untied head) by as many rows.

Design decisions:
- Special tokens, not a text protocol (`<tool_call>...</tool_call>` in plain text): a text tag is
  split into different tokens depending on its neighbours, so the engine would have to match
  decoded text and re-tokenize what it forces in; with ids, every tool path (engine, server
  stream, rollout masks, export) is the one gptlab's own models already use, and a user typing a
  tag in plain text cannot forge one.
- A new row starts at the mean of the rows of its text form's tokens (`<|tool_call|>` -> the rows
  of "<", "|", "tool", ...), or of all rows for `<|pad|>` and `<|reward|>`. A logit is linear in
  the row, so a new token's logit is the mean of some existing logits: never the greedy choice
  of an untrained model, whose outputs therefore do not change; SFT teaches it when to call.
- The ids come right after the last id the model or the tokenizer uses, so every original id and
  row is untouched (import parity holds on the original vocabulary slice).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import tokenizers
import torch

from gptlab.tokenizer.special import (
    PAD,
    REWARD,
    TOOL_CALL,
    TOOL_CALL_END,
    TOOL_RESULT,
    TOOL_RESULT_END,
)

if TYPE_CHECKING:
    from gptlab.model.hf_import import Imported

TOOL_TOKENS = (TOOL_CALL, TOOL_CALL_END, TOOL_RESULT, TOOL_RESULT_END)
GPTLAB_TOKENS = (*TOOL_TOKENS, REWARD, PAD)
ROW_TENSORS = ("embed_tokens.weight", "lm_head.weight")


def add_gptlab_tokens(imp: Imported) -> dict[str, int]:
    """Append the missing GPTLAB_TOKENS to `imp` (tokenizer files, config, weights) in place;
    returns {token: new id} (empty when the vocabulary already has them all)."""
    spec = json.loads(imp.tokenizer["tokenizer.json"])
    tok = tokenizers.Tokenizer.from_str(imp.tokenizer["tokenizer.json"])
    vocab = tok.get_vocab(with_added_tokens=True)
    missing = [t for t in GPTLAB_TOKENS if t not in vocab]
    if not missing:
        return {}
    first = max(imp.config.vocab_size, max(vocab.values()) + 1)
    new_ids = {t: first + k for k, t in enumerate(missing)}
    plain = tokenizers.Tokenizer.from_str(imp.tokenizer["tokenizer.json"])
    plain.encode_special_tokens = True  # a tool token's text form, as plain text
    sources = {t: plain.encode(t, add_special_tokens=False).ids if t in TOOL_TOKENS else [] for t in missing}
    spec.setdefault("added_tokens", [])
    spec["added_tokens"] += [_added_token(t, i) for t, i in new_ids.items()]
    imp.tokenizer["tokenizer.json"] = json.dumps(spec, ensure_ascii=False)
    if "tokenizer_config.json" in imp.tokenizer:
        imp.tokenizer["tokenizer_config.json"] = _with_decoder_entries(
            imp.tokenizer["tokenizer_config.json"], new_ids
        )
    _grow_rows(imp, first + len(missing), new_ids, sources)
    imp.config.vocab_size = first + len(missing)
    return new_ids


def _added_token(content: str, i: int) -> dict[str, Any]:
    return {
        "id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
        "normalized": False, "special": True,
    }  # fmt: skip


def _with_decoder_entries(config_text: str, new_ids: dict[str, int]) -> str:
    """tokenizer_config.json with the new tokens in `added_tokens_decoder` (when it lists any),
    so transformers reads the same special tokens as tokenizer.json says."""
    cfg = json.loads(config_text)
    if isinstance(cfg, dict) and isinstance(cfg.get("added_tokens_decoder"), dict):
        for t, i in new_ids.items():
            entry = _added_token(t, i)
            del entry["id"]
            cfg["added_tokens_decoder"][str(i)] = entry
        return json.dumps(cfg, indent=2, ensure_ascii=False) + "\n"
    return config_text


def _grow_rows(
    imp: Imported, rows: int, new_ids: dict[str, int], sources: dict[str, list[int]]
) -> None:
    """Grow the embedding (and an untied head) to `rows`; see the module doc for the init."""
    tied = imp.config.tie_embeddings
    for name in ROW_TENSORS:
        if name not in imp.state or (tied and name == "lm_head.weight"):
            continue
        old = imp.state[name]
        grown = torch.zeros(rows, old.shape[1], dtype=old.dtype)
        grown[: old.shape[0]] = old
        mean = old.mean(dim=0)
        for t, i in new_ids.items():
            src = [j for j in sources[t] if j < old.shape[0]]
            grown[i] = old[src].mean(dim=0) if src else mean
        imp.state[name] = grown
    if tied:
        imp.state["lm_head.weight"] = imp.state["embed_tokens.weight"]

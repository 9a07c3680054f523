"""Bits per byte and perplexity of a model on held-out token ids, and a unigram baseline.

Bits per byte = (nats of the targets that stand for bytes) / (ln 2 * their UTF-8 bytes). Special
tokens (0 bytes, e.g. <|endoftext|>) are left out of both sums, as in nanochat and `gptlab
pretrain`'s validation, so the figure compares across tokenizers and vocabulary sizes. Nats per
token and perplexity average over every target, specials included.

Every id after the first is scored exactly once, conditioned on what precedes it in its window
(Hugging Face's perplexity recipe). Windows hold `window` input tokens and start every `stride`
tokens; each scores only targets no earlier window reached:

    ids = [e, a, b, c, d], window=2, stride=1: [e a] scores a, b; [a b] scores c; [b c] scores d.

stride == window (the default) gives disjoint windows, where a token sees on average window/2
tokens of context; a smaller stride gives every token after the first window at least
window - stride tokens of context, at window/stride times the compute.
Start `ids` with <|endoftext|> so that the first real token is scored too (`text_bits_per_byte`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from gptlab.data.shards import ShardIndex
from gptlab.errors import InputError

# A long-context model (SmolLM2: 8,192 positions) scored in windows of its whole context pays
# attention's quadratic cost and a (window x vocabulary) logit matrix per row for little change
# in the figure; 2,048 tokens of context is what nanochat and lm-eval's rolling windows use.
DEFAULT_WINDOW = 2048
ROW_TOKENS = 16384  # tokens per forward pass: SmolLM2's logits for them take 3.2 GB in fp32

if TYPE_CHECKING:
    from pathlib import Path

    from gptlab.tokenizer.protocol import TokenizerLike


def windows(n_ids: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, first new target, end) per window, in target positions (target t is ids[t + 1]).

    The window's inputs are ids[start:end] and it scores targets first..end-1.
    windows(5, 2, 1) == [(0, 0, 2), (1, 2, 3), (2, 3, 4)]
    """
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(
            f"need window >= 1 and 1 <= stride <= window, got window={window} stride={stride}"
        )
    n_targets = n_ids - 1
    rows, done, start = [], 0, 0
    while done < n_targets:
        end = min(start + window, n_targets)
        rows.append((start, done, end))
        done, start = end, start + stride
    return rows


def _summary(nats_all: float, n_tokens: int, nats_bytes: float, n_bytes: int) -> dict:
    nats_per_token = nats_all / n_tokens
    return {
        "bpb": nats_bytes / (math.log(2) * n_bytes) if n_bytes else float("nan"),
        "nats_per_token": nats_per_token,
        "ppl": math.exp(nats_per_token),
        "tokens": n_tokens,
        "bytes": n_bytes,
    }


@torch.inference_mode()
def bits_per_byte(
    model: torch.nn.Module,
    ids: Sequence[int] | torch.Tensor,
    token_bytes: Sequence[int] | torch.Tensor,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """{bpb, nats_per_token, ppl, tokens, bytes} of `model` on `ids` (see the module docstring).

    `token_bytes[i]` is the UTF-8 length of token i (`tok.token_byte_lengths()`); `window`
    defaults to the model's context.
    """
    max_len = model.config.max_seq_len
    window = max_len if window is None else window
    if window > max_len:
        raise ValueError(f"window {window} exceeds the model's context {max_len}")
    stride = window if stride is None else stride
    ids_t = torch.as_tensor(ids, dtype=torch.long).flatten().cpu()
    if ids_t.numel() < 2:
        raise ValueError("need at least 2 ids (one context token and one target)")
    nb_t = torch.as_tensor(token_bytes, dtype=torch.float64).cpu()
    if int(ids_t.max()) >= nb_t.numel():
        raise ValueError(
            f"token id {int(ids_t.max())} has no byte length (table of {nb_t.numel()})"
        )
    rows = windows(ids_t.numel(), window, stride)
    dev = next(model.parameters()).device
    sums = torch.zeros(3, dtype=torch.float64)  # nats of all targets, nats of byte targets, bytes
    n_scored = 0
    was_training = model.training
    model.eval()
    batches = range(0, len(rows), batch_size)
    if progress:
        batches = tqdm(batches, desc="bits per byte", unit="batch")
    try:
        for b in batches:
            chunk = rows[b : b + batch_size]
            L = max(e - s for s, _, e in chunk)
            x = torch.zeros(len(chunk), L, dtype=torch.long)
            y = torch.full((len(chunk), L), -1, dtype=torch.long)
            for r, (s, first, e) in enumerate(chunk):
                x[r, : e - s] = ids_t[s:e]
                y[r, first - s : e - s] = ids_t[
                    first + 1 : e + 1
                ]  # earlier targets: scored already
            nll = model(x.to(dev), y.to(dev), reduction="none").double().cpu()  # 0 where y == -1
            nb = torch.where(y >= 0, nb_t[y.clamp(min=0)], 0.0)
            sums += torch.stack([nll.sum(), (nll * (nb > 0)).sum(), nb.sum()])
            n_scored += int((y >= 0).sum())
    finally:
        model.train(was_training)
    assert n_scored == ids_t.numel() - 1, (n_scored, ids_t.numel())  # each target exactly once
    nats, nats_b, nbytes = sums.tolist()
    return _summary(nats, n_scored, nats_b, int(nbytes))


def text_bits_per_byte(model: torch.nn.Module, tok: TokenizerLike, text: str, **kw) -> dict:
    """bits_per_byte of `text` as one document: <|endoftext|> + its tokens, so every byte is scored."""
    ids = [tok.eot_id] + tok.encode(text)
    return bits_per_byte(model, ids, tok.token_byte_lengths(), **kw)


def unigram_bpb(
    train_ids: Sequence[int] | np.ndarray,
    val_ids: Sequence[int] | np.ndarray,
    token_bytes: Sequence[int] | np.ndarray,
    vocab_size: int,
) -> dict:
    """The same summary for a context-free model: add-one smoothed token frequencies of `train_ids`.

    Scores val_ids[1:], the targets `bits_per_byte` scores, so the two figures compare directly:
    a language model that does not beat this has learnt nothing beyond token frequencies.
    """
    train = np.asarray(train_ids, dtype=np.int64)
    val = np.asarray(val_ids, dtype=np.int64)
    if val.size < 2:
        raise ValueError("need at least 2 val ids")
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
    if counts.size > vocab_size or val.max() >= vocab_size:
        raise ValueError(f"token ids must be < vocab_size={vocab_size}")
    logp = np.log(counts + 1.0) - math.log(train.size + vocab_size)
    targets = val[1:]
    nats = -logp[targets]
    nb = np.asarray(token_bytes, dtype=np.int64)[targets]
    return _summary(float(nats.sum()), int(targets.size), float(nats[nb > 0].sum()), int(nb.sum()))


def eval_bpb(model: torch.nn.Module, tok: TokenizerLike, shards: Path, n_tokens: int, batch_size: int,
             window: int | None = None) -> dict:
    """bits_per_byte on the first `n_tokens` val tokens of a shard folder, next to the unigram
    baseline counted on its train split (`gptlab eval --tasks bpb`), in windows of `window`
    tokens (default: the model's context, at most DEFAULT_WINDOW)."""
    window = window or min(model.config.max_seq_len, DEFAULT_WINDOW)
    batch_size = max(1, min(batch_size, ROW_TOKENS // window))  # bounds the (rows, window, vocab) logits
    index = ShardIndex.load(shards)
    if index.vocab_size > model.config.vocab_size:
        raise InputError(shards / "index.json", f"vocab_size {index.vocab_size} exceeds the model's")
    val = np.concatenate(index.arrays("val"))[:n_tokens].astype(np.int64)
    train = np.concatenate(index.arrays("train")).astype(np.int64)
    lengths = tok.token_byte_lengths()
    out = bits_per_byte(model, val, lengths, window=window, batch_size=batch_size, progress=True)
    uni = unigram_bpb(train, val, lengths, model.config.vocab_size)
    out.update(unigram_bpb=uni["bpb"], unigram_ppl=uni["ppl"], source=str(shards), window=window)
    return out

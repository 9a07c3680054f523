"""Multiple choice by log-likelihood: the model picks the choice it finds most probable.

As in lm-eval-harness: for each choice, sum log P(choice tokens | context); `acc` takes the
argmax of the sums, `acc_norm` the argmax of the sums divided by each choice's length in UTF-8
bytes, so long choices are not penalised for having more tokens. (lm-eval names the per-byte
score `acc_bytes` and divides by characters for its `acc_norm`; on ASCII text they agree.)
Scores are reported with the random baseline (mean of 1/len(choices)) and centred accuracy,
(acc - baseline) / (1 - baseline), so tasks with 2 and 4 choices read on one scale.

An item's context goes through the model once; its choices continue from the context's keys and
values in the KV cache, one row each. Token ids only; `make_item` builds an item from text with
a gptlab tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from gptlab.eval.metrics import centred_accuracy
from gptlab.infer.kv_cache import KVCache

if TYPE_CHECKING:
    from gptlab.tokenizer.protocol import TokenizerLike


@dataclass
class MCItem:
    context_ids: list[
        int
    ]  # the prompt, starting with <|endoftext|> for a model trained on documents
    choices_ids: list[list[int]]  # each choice's tokens, to be scored after the context
    label: int  # index of the correct choice
    choice_bytes: list[int] | None = None  # UTF-8 length of each choice's text, for acc_norm


def make_item(
    tok: TokenizerLike, context: str, choices: Sequence[str], label: int, bos: bool = True
) -> MCItem:
    """Encode an item's texts; put any separator into the choices (lm-eval uses " " + choice).

    Context and choices are encoded separately, so a choice's tokens are exactly the ones scored.
    """
    ctx = ([tok.eot_id] if bos else []) + tok.encode(context)
    return MCItem(
        ctx, [tok.encode(c) for c in choices], label, [len(c.encode("utf-8")) for c in choices]
    )


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def choice_logprobs(
    model: torch.nn.Module, context_ids: list[int], choices_ids: list[list[int]]
) -> list[tuple[float, int]]:
    """(sum of log-probs, number of tokens) of each choice after the context.

    The context goes through the model once, into a KV cache whose keys and values every choice
    then continues from (one row per choice): a long context with four short choices costs about
    one context instead of four. When context + a choice exceeds the model's context, each choice
    is scored in its own row with the context cut from the left to fit it (as lm-eval does).
    """
    if not context_ids:
        raise ValueError(
            "context_ids is empty: the first choice token needs something to follow (e.g. BOS)"
        )
    if not choices_ids or any(len(c) == 0 for c in choices_ids):
        raise ValueError(
            "every item needs at least one choice, and every choice at least one token"
        )
    max_len = model.config.max_seq_len
    longest = max(len(c) for c in choices_ids)
    if longest > max_len:
        raise ValueError(
            f"a choice of {longest} tokens does not fit the model's context of {max_len} after a context token"
        )
    if len(context_ids) + longest > max_len + 1:  # each choice keeps as much context as fits it
        return _choice_logprobs_cut(model, context_ids, choices_ids)
    ctx = context_ids
    dev = _device(model)
    was_training = model.training
    model.eval()
    try:
        cache = KVCache(model.config, len(choices_ids), max_len=len(ctx) + longest, device=dev)
        first = _logsoftmax(model, model.hidden_states(torch.tensor([ctx], device=dev), cache.select([0]))[0, -1])
        share_prefix(cache, len(ctx))
        rest = [c[:-1] for c in choices_ids]  # each choice token after the first follows these
        width = max(len(r) for r in rest)
        out = [float(first[c[0]]) for c in choices_ids]
        if width:
            x = torch.tensor([r + [0] * (width - len(r)) for r in rest], device=dev)  # right padding: unseen
            logp = _logsoftmax(model, model.hidden_states(x, cache.select(None)))
            for r, c in enumerate(choices_ids):
                if len(c) > 1:
                    out[r] += float(logp[r, torch.arange(len(c) - 1), torch.tensor(c[1:], device=dev)].sum())
    finally:
        model.train(was_training)
    return [(lp, len(c)) for lp, c in zip(out, choices_ids)]


def _choice_logprobs_cut(model: torch.nn.Module, context_ids: list[int], choices_ids: list[list[int]]) -> list[tuple[float, int]]:
    """One row per choice, its context cut from the left to fit (a context longer than the model's)."""
    max_len = model.config.max_seq_len
    rows = []
    for choice in choices_ids:
        ctx = context_ids[-(max_len + 1 - len(choice)) :]  # the input is seq[:-1]: max_len + 1 fit
        rows.append((ctx + choice, len(ctx)))
    L = max(len(seq) for seq, _ in rows) - 1
    x = torch.zeros(len(rows), L, dtype=torch.long)
    y = torch.full((len(rows), L), -1, dtype=torch.long)
    for r, (seq, start) in enumerate(rows):
        x[r, : len(seq) - 1] = torch.tensor(seq[:-1])
        y[r, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])  # only the choice's tokens count
    was_training = model.training
    model.eval()
    try:
        dev = _device(model)
        nll = model(x.to(dev), y.to(dev), reduction="none").double().cpu()  # 0 where ignored
    finally:
        model.train(was_training)
    return [(-float(nll[r].sum()), len(c)) for r, c in enumerate(choices_ids)]


def _logsoftmax(model: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(model.lm_head(h).double(), dim=-1)


def share_prefix(cache: KVCache, n: int) -> None:
    """Copy slot 0's first n keys and values into every other slot: one prefill, many rows."""
    assert cache.k is not None and cache.v is not None
    cache.k[:, 1:, :, :n] = cache.k[:, :1, :, :n]
    cache.v[:, 1:, :, :n] = cache.v[:, :1, :, :n]
    for slot in range(cache.n_slots):
        cache.set_length(slot, n)


def score_multiple_choice(
    model: torch.nn.Module,
    items: Iterable[MCItem],
    token_bytes: Sequence[int] | None = None,
    progress: bool = False,
) -> dict:
    """acc, acc_norm, random_baseline, centred_acc, centred_acc_norm, n over the items, and
    `item_correct` (1/0 per item by `acc`'s rule, in order: for paired comparisons of two models).

    `acc_norm` needs byte lengths: each item's `choice_bytes`, or else `token_bytes` (bytes per
    token id, e.g. `tok.token_byte_lengths()`) to add up over the choice's tokens.
    """
    items = list(items)
    if not items:
        raise ValueError("no items to score")
    correct = correct_norm = 0
    item_correct: list[int] = []
    baseline = 0.0
    it = items
    if progress:
        it = tqdm(items, desc="multiple choice", unit="item")
    for item in it:
        if not 0 <= item.label < len(item.choices_ids):
            raise ValueError(
                f"label {item.label} is not an index into {len(item.choices_ids)} choices"
            )
        lps = [lp for lp, _ in choice_logprobs(model, item.context_ids, item.choices_ids)]
        if item.choice_bytes is not None:
            nbytes = item.choice_bytes
        elif token_bytes is not None:
            nbytes = [sum(token_bytes[t] for t in c) for c in item.choices_ids]
        else:
            raise ValueError("acc_norm needs item.choice_bytes or token_bytes")
        # first maximum wins, as numpy.argmax in lm-eval
        item_correct.append(int(max(range(len(lps)), key=lambda i: lps[i]) == item.label))
        correct += item_correct[-1]
        correct_norm += max(range(len(lps)), key=lambda i: lps[i] / max(nbytes[i], 1)) == item.label
        baseline += 1.0 / len(item.choices_ids)
    n = len(items)
    acc, acc_norm, base = correct / n, correct_norm / n, baseline / n
    return {
        "acc": acc,
        "acc_norm": acc_norm,
        "random_baseline": base,
        "centred_acc": centred_accuracy(acc, base),
        "centred_acc_norm": centred_accuracy(acc_norm, base),
        "n": n,
        "item_correct": item_correct,
    }

"""Multiple choice by log-likelihood: the model picks the choice it finds most probable.

As in lm-eval-harness: for each choice, sum log P(choice tokens | context); `acc` takes the
argmax of the sums, `acc_norm` the argmax of the sums divided by each choice's length in UTF-8
bytes, so long choices are not penalised for having more tokens. (lm-eval names the per-byte
score `acc_bytes` and divides by characters for its `acc_norm`; on ASCII text they agree.)
Scores are reported with the random baseline (mean of 1/len(choices)) and centred accuracy,
(acc - baseline) / (1 - baseline), so tasks with 2 and 4 choices read on one scale.

An item's context goes through the model once; its choices continue from the context's keys and
values in the KV cache, one row each. Items of similar context length are scored together (a
play question's context is ~60 tokens: one at a time, per-call overhead took two thirds of the
time). Token ids only; `make_item` builds an item from text with a gptlab tokenizer.
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


def _check(model: torch.nn.Module, context_ids: list[int], choices_ids: list[list[int]]) -> None:
    if not context_ids:
        raise ValueError(
            "context_ids is empty: the first choice token needs something to follow (e.g. BOS)"
        )
    if not choices_ids or any(len(c) == 0 for c in choices_ids):
        raise ValueError(
            "every item needs at least one choice, and every choice at least one token"
        )
    longest = max(len(c) for c in choices_ids)
    if longest > model.config.max_seq_len:
        raise ValueError(
            f"a choice of {longest} tokens does not fit the model's context of {model.config.max_seq_len} after a context token"
        )


def choice_logprobs(
    model: torch.nn.Module, context_ids: list[int], choices_ids: list[list[int]]
) -> list[tuple[float, int]]:
    """(sum of log-probs, number of tokens) of each choice after the context.

    The context goes through the model once, into a KV cache whose keys and values every choice
    then continues from (one row per choice): a long context with four short choices costs about
    one context instead of four. When context + a choice exceeds the model's context, each choice
    is scored in its own row with the context cut from the left to fit it (as lm-eval does).
    """
    return choice_logprobs_batch(model, [(context_ids, choices_ids)])[0]


@torch.inference_mode()
def choice_logprobs_batch(
    model: torch.nn.Module, items: Sequence[tuple[list[int], list[list[int]]]]
) -> list[list[tuple[float, int]]]:
    """`choice_logprobs` of several (context, choices) items in two forward passes: the contexts
    side by side (right-padded), then every choice of every item continuing its own item's keys and
    values. At batch 1 a 135M model spent most of an item in per-call overhead and small matrices."""
    for ctx, choices in items:
        _check(model, ctx, choices)
    max_len = model.config.max_seq_len
    out: list[list[tuple[float, int]] | None] = [None] * len(items)
    fits = []
    for i, (ctx, choices) in enumerate(items):
        if len(ctx) + max(len(c) for c in choices) > max_len + 1:  # each choice keeps as much context as fits it
            out[i] = _choice_logprobs_cut(model, ctx, choices)
        else:
            fits.append(i)
    if fits:
        got = _shared_context_logprobs(model, [items[i] for i in fits])
        for i, g in zip(fits, got):
            out[i] = g
    return [o for o in out if o is not None]


def _shared_context_logprobs(
    model: torch.nn.Module, items: Sequence[tuple[list[int], list[list[int]]]]
) -> list[list[tuple[float, int]]]:
    dev = _device(model)
    lead, slots = [], []  # each item's first choice slot; every choice's (item, slot)
    for i, (_, choices) in enumerate(items):
        lead.append(len(slots))
        slots += [(i, len(slots) + j) for j in range(len(choices))]
    width = max(len(ctx) for ctx, _ in items)
    longest = max(len(c) for _, choices in items for c in choices)
    was_training = model.training
    model.eval()
    try:
        cache = KVCache(model.config, len(slots), max_len=width + longest, device=dev)
        x = torch.tensor([ctx + [0] * (width - len(ctx)) for ctx, _ in items], device=dev)  # right padding: unseen
        h = model.hidden_states(x, cache.select(lead))
        last = torch.tensor([len(ctx) - 1 for ctx, _ in items], device=dev)
        first = _logsoftmax(model, h[torch.arange(len(items), device=dev), last])  # (items, V)
        for i, (ctx, choices) in enumerate(items):
            cache.set_length(lead[i], len(ctx))
            for j in range(1, len(choices)):
                cache.copy_slot(lead[i], lead[i] + j, len(ctx))
                cache.set_length(lead[i] + j, len(ctx))
        out = [[float(first[i, c[0]]) for c in choices] for i, (_, choices) in enumerate(items)]
        rest = [items[i][1][s - lead[i]][:-1] for i, s in slots]  # each choice token after the first follows these
        w = max(len(r) for r in rest)
        if w:
            x = torch.tensor([r + [0] * (w - len(r)) for r in rest], device=dev)
            logp = _logsoftmax(model, model.hidden_states(x, cache.select(None)))
            for (i, s), r in zip(slots, rest):
                c = items[i][1][s - lead[i]]
                if r:
                    out[i][s - lead[i]] += float(logp[s, torch.arange(len(r)), torch.tensor(c[1:], device=dev)].sum())
    finally:
        model.train(was_training)
    return [[(lp, len(c)) for lp, c in zip(o, choices)] for o, (_, choices) in zip(out, items)]


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


def batched_logprobs(model: torch.nn.Module, items: Sequence[MCItem], batch_tokens: int = 4096,
                     bar: tqdm | None = None) -> list[list[tuple[float, int]]]:
    """Choice log-probs of every item, in item order; batches group items by context length so
    that little of a batch is padding."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].context_ids))
    out: list[list[tuple[float, int]]] = [[] for _ in items]
    start = 0
    while start < len(order):
        end = start + 1  # the longest context of a batch is its last: stop before it passes the budget
        while end < len(order) and (end + 1 - start) * len(items[order[end]].context_ids) <= batch_tokens:
            end += 1
        part = order[start:end]
        got = choice_logprobs_batch(model, [(items[i].context_ids, items[i].choices_ids) for i in part])
        for i, g in zip(part, got):
            out[i] = g
        if bar is not None:
            bar.update(len(part))
        start = end
    return out


def score_multiple_choice(
    model: torch.nn.Module,
    items: Iterable[MCItem],
    token_bytes: Sequence[int] | None = None,
    progress: bool = False,
    batch_tokens: int = 4096,
) -> dict:
    """acc, acc_norm, random_baseline, centred_acc, centred_acc_norm, n over the items, and
    `item_correct` (1/0 per item by `acc`'s rule, in order: for paired comparisons of two models).

    `acc_norm` needs byte lengths: each item's `choice_bytes`, or else `token_bytes` (bytes per
    token id, e.g. `tok.token_byte_lengths()`) to add up over the choice's tokens. Items of similar
    context length are scored together, about `batch_tokens` context tokens per forward pass.
    """
    items = list(items)
    if not items:
        raise ValueError("no items to score")
    correct = correct_norm = 0
    item_correct: list[int] = []
    baseline = 0.0
    it = tqdm(total=len(items), desc="multiple choice", unit="item") if progress else None
    for item in items:
        if not 0 <= item.label < len(item.choices_ids):
            raise ValueError(
                f"label {item.label} is not an index into {len(item.choices_ids)} choices"
            )
    scored = batched_logprobs(model, items, batch_tokens, it)
    for item, got in zip(items, scored):
        lps = [lp for lp, _ in got]
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
    if it is not None:
        it.close()
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

"""Batched, padded choice scoring equals scoring each choice alone with a full forward; acc and
acc_norm pick what they should; the baseline and centred accuracy follow the choice counts."""

from __future__ import annotations

import pytest
import torch

from gptlab.eval.multiple_choice import (
    MCItem,
    choice_logprobs,
    choice_logprobs_batch,
    make_item,
    score_multiple_choice,
)
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT

V = 61


def tiny(seed: int = 0, max_seq_len: int = 16, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=V,
        n_layer=2,
        n_embd=32,
        n_head=4,
        n_kv_head=2,
        intermediate_size=48,
        max_seq_len=max_seq_len,
        **kw,
    )
    return GPT(cfg).eval()


def naive_logprob(model: GPT, context: list[int], choice: list[int]) -> float:
    """One choice, no padding, no batching: log_softmax over a full forward of context + choice."""
    seq = (context + choice)[-(model.config.max_seq_len + 1) :]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([seq[:-1]])).double(), dim=-1)[0]
    n = len(choice)
    targets = seq[-n:]
    return sum(float(logp[len(seq) - 1 - n + i, t]) for i, t in enumerate(targets))


def test_batched_equals_one_at_a_time():
    model = tiny()
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        ctx = torch.randint(
            0, V, (int(torch.randint(1, 8, (1,), generator=g)),), generator=g
        ).tolist()
        choices = [
            torch.randint(0, V, (n,), generator=g).tolist() for n in (1, 4, 2, 6)
        ]  # ragged: padding
        got = choice_logprobs(model, ctx, choices)
        assert [n for _, n in got] == [1, 4, 2, 6]
        for (lp, _), c in zip(got, choices, strict=True):
            assert lp == pytest.approx(naive_logprob(model, ctx, c), abs=1e-4)
            assert lp < 0


def test_items_scored_together_equal_each_alone():
    """Contexts of different lengths side by side, choices of different counts and lengths, one
    item too long for the model: every log-prob equals the full-forward one."""
    model = tiny(max_seq_len=24)
    g = torch.Generator().manual_seed(2)
    items = []
    for n_ctx, lens in [(3, (1, 4)), (9, (2, 2, 5)), (1, (3,) * 4), (22, (4, 1)), (6, (1,))]:
        ctx = torch.randint(0, V, (n_ctx,), generator=g).tolist()
        items.append((ctx, [torch.randint(0, V, (n,), generator=g).tolist() for n in lens]))
    got = choice_logprobs_batch(model, items)
    assert [[n for _, n in g] for g in got] == [[len(c) for c in ch] for _, ch in items]
    for (ctx, choices), scored in zip(items, got, strict=True):
        for (lp, _), c in zip(scored, choices, strict=True):
            assert lp == pytest.approx(naive_logprob(model, ctx, c), abs=1e-4)
    mc = [MCItem(ctx, ch, 0, [1] * len(ch)) for ctx, ch in items]
    one_by_one = score_multiple_choice(model, mc, batch_tokens=1)
    assert score_multiple_choice(model, mc, batch_tokens=10_000) == one_by_one


def test_long_context_is_truncated_from_the_left():
    model = tiny(max_seq_len=16)
    ctx = list(range(1, 30))  # longer than the model's context
    choices = [[3, 4, 5], [7]]
    got = choice_logprobs(model, ctx, choices)
    for (lp, _), c in zip(got, choices, strict=True):
        assert lp == pytest.approx(naive_logprob(model, ctx, c), abs=1e-4)
    # exactly max_seq_len + 1 tokens in all: nothing is cut
    got_fit = choice_logprobs(model, ctx[-13:], [[3, 4, 5, 6]])
    assert got_fit[0][0] == pytest.approx(naive_logprob(model, ctx[-13:], [3, 4, 5, 6]), abs=1e-4)


def test_restores_training_mode_and_rejects_bad_input():
    model = tiny(dropout=0.5).train()
    a = choice_logprobs(model, [1, 2], [[3], [4, 5]])
    b = choice_logprobs(model, [1, 2], [[3], [4, 5]])
    assert a == b  # dropout off while scoring
    assert model.training
    with pytest.raises(ValueError, match="empty"):
        choice_logprobs(model, [], [[1]])
    with pytest.raises(ValueError, match="at least one token"):
        choice_logprobs(model, [1], [[2], []])
    with pytest.raises(ValueError, match="does not fit"):
        choice_logprobs(model, [1], [list(range(17))])


def uniform_model() -> GPT:
    """Every next token has probability 1/V, so a choice's log-prob is -n_tokens * ln V."""
    model = tiny()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model


def test_acc_vs_acc_norm_on_a_uniform_model():
    model = uniform_model()
    # choice 0: 1 token of 1 byte; choice 1: 2 tokens of 10 bytes. Raw log-prob prefers the
    # shorter choice; per byte, the longer one costs less (2 ln V / 10 < ln V / 1).
    item = MCItem([0, 1], [[5], [6, 7]], label=1, choice_bytes=[1, 10])
    r = score_multiple_choice(model, [item])
    assert (r["acc"], r["acc_norm"], r["n"]) == (0.0, 1.0, 1)
    # byte lengths from a token table instead of the item
    table = [1] * V
    table[6] = table[7] = 5
    item.choice_bytes = None
    assert score_multiple_choice(model, [item], token_bytes=table)["acc_norm"] == 1.0
    with pytest.raises(ValueError, match="choice_bytes or token_bytes"):
        score_multiple_choice(model, [item])


def test_scores_match_naive_argmax_and_baseline():
    model = tiny(seed=3)
    g = torch.Generator().manual_seed(2)
    items, want_acc, want_norm = [], 0, 0
    for i in range(12):
        k = 2 if i % 2 else 4
        ctx = torch.randint(0, V, (5,), generator=g).tolist()
        choices = [torch.randint(0, V, (1 + j % 3,), generator=g).tolist() for j in range(k)]
        nbytes = [3 * len(c) + j for j, c in enumerate(choices)]
        label = i % k
        items.append(MCItem(ctx, choices, label, nbytes))
        lps = [naive_logprob(model, ctx, c) for c in choices]
        want_acc += max(range(k), key=lambda j: lps[j]) == label
        want_norm += max(range(k), key=lambda j: lps[j] / nbytes[j]) == label
    r = score_multiple_choice(model, items)
    assert r["acc"] == want_acc / 12 and r["acc_norm"] == want_norm / 12
    assert r["random_baseline"] == pytest.approx((0.5 + 0.25) / 2)
    assert r["centred_acc"] == pytest.approx((r["acc"] - 0.375) / 0.625)
    assert r["n"] == 12


def test_make_item_with_a_real_tokenizer():
    from gptlab.tokenizer.bpe import Tokenizer

    tok = Tokenizer.train(["To be, or not to be, that is the question. " * 20], 300)
    item = make_item(tok, "To be, or not to", [" be", " sea", " déjà"], label=0)
    assert item.context_ids[0] == tok.eot_id
    assert tok.decode(item.context_ids[1:]) == "To be, or not to"
    assert [tok.decode(c) for c in item.choices_ids] == [" be", " sea", " déjà"]
    assert item.choice_bytes == [3, 4, 7]  # UTF-8 bytes, not characters
    model = GPT(
        ModelConfig(
            vocab_size=tok.vocab_size,
            n_layer=1,
            n_embd=16,
            n_head=2,
            n_kv_head=2,
            intermediate_size=32,
            max_seq_len=32,
        )
    ).eval()
    r = score_multiple_choice(model, [item])
    assert r["n"] == 1 and r["random_baseline"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="label"):
        score_multiple_choice(model, [MCItem([1], [[2]], label=1, choice_bytes=[1])])

"""Our numpy classifier metrics equal scikit-learn's on random inputs, ties and edge cases included;
bits per byte equals a naive per-token computation for every windowing; the unigram baseline by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gptlab.eval.bpb import bits_per_byte, text_bits_per_byte, unigram_bpb, windows
from gptlab.eval.metrics import (
    accuracy,
    average_ranks,
    bootstrap_ci,
    centred_accuracy,
    classification_report,
    confusion_matrix,
    grouped_bootstrap_ci,
    paired_gain,
    precision_recall_f1,
    roc_auc,
    sign_test,
)
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT

try:
    import sklearn.metrics as sk
except ImportError:  # the bpb tests below still run
    sk = None
needs_sklearn = pytest.mark.skipif(sk is None, reason="scikit-learn not installed")


@needs_sklearn
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_against_sklearn_random(seed, k):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    t = rng.integers(0, k, n)
    # predictions agree with the truth more than chance, and some labels may never be predicted
    p = np.where(rng.random(n) < 0.5, t, rng.integers(0, k, n))
    assert accuracy(t, p) == pytest.approx(sk.accuracy_score(t, p))
    assert np.array_equal(
        confusion_matrix(t, p), sk.confusion_matrix(t, p, labels=np.unique(np.r_[t, p]))
    )
    for avg in ["micro", "macro"] + (["binary"] if k == 2 else []):
        ours = precision_recall_f1(t, p, average=avg)
        ref = sk.precision_recall_fscore_support(t, p, average=avg, zero_division=0)[:3]
        assert ours == pytest.approx(ref), avg


@needs_sklearn
def test_binary_with_no_positive_predictions_is_zero_not_nan():
    t, p = [1, 0, 1, 0], [0, 0, 0, 0]
    assert precision_recall_f1(t, p) == (0.0, 0.0, 0.0)
    assert precision_recall_f1(t, p) == pytest.approx(
        sk.precision_recall_fscore_support(t, p, average="binary", zero_division=0)[:3]
    )


@needs_sklearn
def test_string_labels_and_pos_label():
    t = ["cat", "dog", "dog", "cat", "bird"]
    p = ["cat", "cat", "dog", "cat", "dog"]
    assert precision_recall_f1(t, p, "macro") == pytest.approx(
        sk.precision_recall_fscore_support(t, p, average="macro", zero_division=0)[:3]
    )
    tb, pb = ["y", "n", "y"], ["y", "y", "n"]
    assert precision_recall_f1(tb, pb, "binary", pos_label="y") == pytest.approx((0.5, 0.5, 0.5))


@needs_sklearn
@pytest.mark.parametrize("seed", range(10))
def test_roc_auc_against_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 80))
    t = rng.integers(0, 2, n)
    t[:2] = [0, 1]  # both classes present
    # coarse scores so many ties, within and across classes
    s = np.round(t * 0.3 + rng.random(n), 1)
    assert roc_auc(t, s) == pytest.approx(sk.roc_auc_score(t, s))


def test_roc_auc_examples():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([True, False], [2.0, 1.0]) == 1.0
    with pytest.raises(ValueError, match="one class"):
        roc_auc([1, 1], [0.1, 0.2])


def test_average_ranks_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).integers(0, 5, 40)
    assert np.allclose(average_ranks(x), stats.rankdata(x))
    assert average_ranks([10, 20, 10]).tolist() == [1.5, 3.0, 1.5]


def test_centred_accuracy():
    assert centred_accuracy(0.625, 0.25) == pytest.approx(0.5)
    assert centred_accuracy(0.25, 0.25) == 0.0
    assert centred_accuracy(1.0, 0.5) == 1.0
    with pytest.raises(ValueError):
        centred_accuracy(0.5, 1.0)


@needs_sklearn
def test_classification_report_binary():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 2, 50)
    s = t * 0.4 + rng.random(50)
    p = (s > 0.7).astype(int)
    r = classification_report(t, p, y_score=s)
    assert r["n"] == 50
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(t, p))
    assert r["roc_auc"] == pytest.approx(sk.roc_auc_score(t, s))
    assert r["binary"]["f1"] == pytest.approx(sk.f1_score(t, p))
    assert r["macro"]["f1"] == pytest.approx(sk.f1_score(t, p, average="macro"))
    ref = sk.classification_report(t, p, output_dict=True)
    for lab in ("0", "1"):
        for key, sk_key in [
            ("precision", "precision"),
            ("recall", "recall"),
            ("f1", "f1-score"),
            ("support", "support"),
        ]:
            assert r["per_label"][lab][key] == pytest.approx(ref[lab][sk_key])
    assert r["confusion_matrix"] == sk.confusion_matrix(t, p).tolist()


def test_classification_report_multiclass_has_no_binary_block():
    r = classification_report([0, 1, 2, 2], [0, 2, 2, 1])
    assert "binary" not in r and "roc_auc" not in r
    assert r["micro"]["f1"] == pytest.approx(0.5)


def test_shape_errors():
    with pytest.raises(ValueError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="average"):
        precision_recall_f1([0], [0], average="weighted")


def test_bootstrap_ci_covers_and_shrinks():
    rng = np.random.default_rng(0)
    small = rng.random(30) < 0.7
    big = rng.random(3000) < 0.7
    lo_s, hi_s = bootstrap_ci(small, n=500)
    lo_b, hi_b = bootstrap_ci(big, n=500)
    assert lo_s <= small.mean() <= hi_s
    assert lo_b < 0.7 < hi_b
    assert hi_b - lo_b < (hi_s - lo_s) / 4  # width ~ 1/sqrt(n): 10x the data, ~1/10 the width
    assert bootstrap_ci(small, n=500, seed=1) == bootstrap_ci(small, n=500, seed=1)  # seeded
    # normal-theory width for a proportion: 2 * 1.96 * sqrt(p(1-p)/n)
    assert hi_b - lo_b == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 3000), rel=0.15)


def test_bootstrap_ci_of_a_paired_statistic():
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 1.0, 400)
    pairs = np.stack([a, a - 0.5 + rng.normal(0, 0.1, 400)], axis=1)  # rows resampled together
    lo, hi = bootstrap_ci(pairs, stat=lambda v: float(np.mean(v[:, 0] - v[:, 1])), n=300)
    assert lo < 0.5 < hi and hi - lo < 0.05


# ---------------------------------------------------------------- bits per byte

V = 50
SPECIAL = 0  # token 0 plays <|endoftext|>: 0 bytes
TOKEN_BYTES = [0] + [1 + i % 4 for i in range(1, V)]


def tiny_model(seed: int = 0, max_seq_len: int = 12) -> GPT:
    torch.manual_seed(seed)
    return GPT(
        ModelConfig(
            vocab_size=V,
            n_layer=2,
            n_embd=32,
            n_head=4,
            n_kv_head=4,
            intermediate_size=48,
            max_seq_len=max_seq_len,
        )
    ).eval()


def naive_bpb(model: GPT, ids: list[int], window: int, stride: int) -> tuple[float, float, int]:
    """Each target alone: find the first window (starts 0, stride, 2*stride...) that reaches it and
    score it after the window's tokens before it. Returns (nats all, nats of byte tokens, bytes)."""
    nats_all = nats_b = 0.0
    nbytes = 0
    for t in range(len(ids) - 1):  # target ids[t + 1], input position t
        s = 0
        while s + window <= t:
            s += stride
        with torch.no_grad():
            logits = model(torch.tensor([ids[s : t + 1]]))[0, -1].double()
        nll = -float(torch.log_softmax(logits, -1)[ids[t + 1]])
        nats_all += nll
        if TOKEN_BYTES[ids[t + 1]]:
            nats_b += nll
            nbytes += TOKEN_BYTES[ids[t + 1]]
    return nats_all, nats_b, nbytes


def test_windows_schedule():
    assert windows(5, 2, 1) == [(0, 0, 2), (1, 2, 3), (2, 3, 4)]
    assert windows(7, 3, 3) == [(0, 0, 3), (3, 3, 6)]
    with pytest.raises(ValueError):
        windows(5, 2, 3)


@pytest.mark.parametrize("window, stride", [(12, 12), (12, 4), (5, 1), (8, 5)])
def test_bpb_equals_naive_per_token(window, stride):
    model = tiny_model()
    g = torch.Generator().manual_seed(window * 10 + stride)
    ids = torch.randint(1, V, (30,), generator=g).tolist()
    ids[0] = ids[13] = SPECIAL  # documents joined by the special token, which has no bytes
    r = bits_per_byte(model, ids, TOKEN_BYTES, window=window, stride=stride, batch_size=3)
    nats_all, nats_b, nbytes = naive_bpb(model, ids, window, stride)
    assert r["tokens"] == 29 and r["bytes"] == nbytes == sum(TOKEN_BYTES[i] for i in ids[1:])
    assert r["nats_per_token"] == pytest.approx(nats_all / 29, rel=1e-5)
    assert r["bpb"] == pytest.approx(nats_b / (math.log(2) * nbytes), rel=1e-5)
    assert r["ppl"] == pytest.approx(math.exp(nats_all / 29), rel=1e-5)


def test_bpb_of_a_uniform_model_is_log_vocab():
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    ids = [SPECIAL] + list(range(1, V))
    r = bits_per_byte(model, ids, TOKEN_BYTES)
    assert r["nats_per_token"] == pytest.approx(math.log(V))
    assert r["ppl"] == pytest.approx(V)
    assert r["bpb"] == pytest.approx((V - 1) * math.log2(V) / sum(TOKEN_BYTES))


def test_bpb_batch_size_and_mode_do_not_matter():
    model = tiny_model(seed=1).train()
    ids = torch.randint(0, V, (40,), generator=torch.Generator().manual_seed(0))
    a = bits_per_byte(model, ids, torch.tensor(TOKEN_BYTES), window=6, stride=3, batch_size=1)
    b = bits_per_byte(model, ids.tolist(), TOKEN_BYTES, window=6, stride=3, batch_size=16)
    assert a["bpb"] == pytest.approx(b["bpb"], rel=1e-6) and a["tokens"] == b["tokens"] == 39
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="exceeds"):
        bits_per_byte(model, ids, TOKEN_BYTES, window=13)
    with pytest.raises(ValueError, match="at least 2"):
        bits_per_byte(model, [1], TOKEN_BYTES)


def test_text_bpb_counts_every_utf8_byte():
    from gptlab.tokenizer.bpe import Tokenizer

    tok = Tokenizer.train(["Now is the winter of our discontent. " * 10], 300)
    model = GPT(
        ModelConfig(
            vocab_size=tok.vocab_size,
            n_layer=1,
            n_embd=16,
            n_head=2,
            n_kv_head=2,
            intermediate_size=32,
            max_seq_len=16,
        )
    ).eval()
    text = "Now is the winter — of our discontent, ça va."
    r = text_bits_per_byte(model, tok, text, stride=8)
    assert r["bytes"] == len(text.encode("utf-8"))
    assert r["tokens"] == len(tok.encode(text))
    assert 0 < r["bpb"] < 3 * math.log2(tok.vocab_size)


def test_unigram_bpb_by_hand():
    # train counts over vocab 4: token 1 x3, token 2 x1 (N=4); add-one: p = (c + 1) / (N + V) = (c + 1) / 8
    token_bytes = [0, 1, 2, 3]
    r = unigram_bpb([1, 1, 1, 2], [0, 1, 2, 0, 3], token_bytes, vocab_size=4)
    p = {0: 1 / 8, 1: 4 / 8, 2: 2 / 8, 3: 1 / 8}
    targets = [1, 2, 0, 3]
    nats = [-math.log(p[t]) for t in targets]
    assert r["tokens"] == 4 and r["bytes"] == 1 + 2 + 3
    assert r["nats_per_token"] == pytest.approx(sum(nats) / 4)
    assert r["bpb"] == pytest.approx((nats[0] + nats[1] + nats[3]) / (math.log(2) * 6))
    with pytest.raises(ValueError, match="vocab_size"):
        unigram_bpb([1], [0, 9], token_bytes, vocab_size=4)


def test_bpb_equals_pretrain_validation(tmp_path):
    """`gptlab pretrain`'s val hook (packed disjoint windows) gives the same figures on a val shard."""
    from gptlab.data.shards import write_token_shards
    from gptlab.stages.pretrain import make_evaluate
    from gptlab.train.distributed import DistInfo

    T = 12
    ids = torch.randint(1, V, (4 * T + 1,), generator=torch.Generator().manual_seed(5))
    ids[0] = ids[20] = SPECIAL
    write_token_shards(tmp_path, {"train": [ids.numpy()], "val": [ids.numpy()]}, V, SPECIAL)
    lengths = torch.tensor(TOKEN_BYTES, dtype=torch.float64)
    evaluate = make_evaluate(tmp_path, 2, T, 10**6, DistInfo(), lengths)
    model = tiny_model(seed=2, max_seq_len=T)
    ref = evaluate(model)
    ours = bits_per_byte(model, ids, TOKEN_BYTES, window=T)
    assert ours["tokens"] == 4 * T
    assert ours["nats_per_token"] == pytest.approx(ref["val_loss"], rel=1e-6)
    assert ours["bpb"] == pytest.approx(ref["val_bpb"], rel=1e-6)


@pytest.mark.parametrize("wins,losses", [(9, 1), (0, 7), (12, 12), (30, 18), (1, 0)])
def test_sign_test_matches_scipy_binomtest(wins, losses):
    from scipy.stats import binomtest

    expected = binomtest(wins, wins + losses, 0.5).pvalue
    assert sign_test(wins, losses) == pytest.approx(expected, rel=1e-9)


def test_paired_gain_separates_a_real_gain_from_a_reshuffle():
    rng = np.random.default_rng(0)
    before = (rng.random(400) < 0.1).astype(float)
    # 30 problems fixed, 5 broken: a real gain of 25/400
    after = before.copy()
    zeros, ones = np.flatnonzero(before == 0), np.flatnonzero(before == 1)
    after[zeros[:30]], after[ones[:5]] = 1.0, 0.0
    g = paired_gain(before, after)
    assert (g["fixed"], g["broken"], g["n"]) == (30, 5, 400)
    assert g["gain"] == pytest.approx(25 / 400)
    assert g["ci95"][0] > 0 and g["sign_test_p"] < 1e-3
    # the same number right, but different problems: no gain, interval around 0
    swapped = before.copy()
    swapped[zeros[:10]], swapped[ones[:10]] = 1.0, 0.0
    g = paired_gain(before, swapped)
    assert g["gain"] == 0 and g["ci95"][0] < 0 < g["ci95"][1] and g["sign_test_p"] == 1.0


def test_paired_gain_on_graded_scores_has_no_counts_and_checks_shapes():
    g = paired_gain([0.1, 0.5, 0.2], [0.6, 0.5, 0.2])
    assert "fixed" not in g and g["gain"] == pytest.approx(0.5 / 3)
    with pytest.raises(ValueError, match="equal"):
        paired_gain([1.0, 0.0], [1.0])


def test_grouped_bootstrap_ci_separates_a_real_gain_from_noise():
    import random

    rng = random.Random(0)
    groups = [i // 3 for i in range(600)]  # 200 rankings of 3 pairs
    clear = [1.0 - 0.5 if rng.random() < 0.7 else 0.0 - 0.5 for _ in groups]  # 70% right vs random 0.5
    lo, hi = grouped_bootstrap_ci(clear, groups)
    assert 0.1 < lo < 0.2 < hi < 0.3
    coin = [rng.choice([0.5, -0.5]) for _ in groups]  # a coin flip against the same baseline
    lo, hi = grouped_bootstrap_ci(coin, groups)
    assert lo < 0 < hi
    # whole rankings are resampled: 3 identical pairs per ranking widen the interval vs 3 free pairs
    tied = [x for x in coin[:200] for _ in range(3)]
    lo_t, hi_t = grouped_bootstrap_ci(tied, groups)
    lo_f, hi_f = grouped_bootstrap_ci(tied, list(range(600)))
    assert hi_t - lo_t > 1.4 * (hi_f - lo_f)

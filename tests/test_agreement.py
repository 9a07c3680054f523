"""Rater agreement: Cohen's kappa (plain and weighted), MAE and RMSE against hand values and
scikit-learn; the agreement of two rankings files (`gptlab rank agree`) on identical, reversed and
re-split rankings; and the path the benchmark takes: ratings -> a judge model's rankings -> agree."""

from __future__ import annotations

import doctest
import json
import random

import numpy as np
import pytest
import torch

from gptlab.align import agreement as agreement_module
from gptlab.align import rank_cli
from gptlab.align.agreement import agreement, kendall_tau
from gptlab.align.ratings import ratings_rankings
from gptlab.data.chats import Chat, Turn
from gptlab.data.preferences import Ranking, load_rankings, save_rankings
from gptlab.errors import InputError
from gptlab.eval import metrics
from gptlab.eval.metrics import cohen_kappa, mean_absolute_error, root_mean_squared_error
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples

try:
    import sklearn.metrics as sk
except ImportError:
    sk = None
needs_sklearn = pytest.mark.skipif(sk is None, reason="scikit-learn not installed")


def test_docstring_examples_hold():
    assert doctest.testmod(metrics).failed == 0
    assert doctest.testmod(agreement_module).failed == 0


def test_kappa_mae_rmse_by_hand():
    # 10 items, two raters: agree on 7; rater 1 says yes 6 times, rater 2 says yes 5 times.
    # p_o = 0.7, p_e = 0.6 * 0.5 + 0.4 * 0.5 = 0.5, kappa = 0.2 / 0.5 = 0.4
    r1 = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    r2 = [1, 1, 1, 1, 0, 0, 1, 0, 0, 0]
    assert cohen_kappa(r1, r2) == pytest.approx(0.4)
    assert cohen_kappa(r1, r1) == 1.0
    assert cohen_kappa(r1, [1 - x for x in r1]) == pytest.approx(-0.923076923, abs=1e-8)  # -0.48/0.52
    assert np.isnan(cohen_kappa([1, 1, 1], [1, 1, 1]))  # no variation: chance already explains it
    # ordinal: one step off is cheap under linear weights, cheaper still under quadratic
    a, b = [1, 2, 3, 4, 5], [1, 2, 3, 5, 4]
    assert cohen_kappa(a, b) == pytest.approx(0.5)  # p_o = 0.6, p_e = 5 * (1/5)^2 = 0.2
    # weighted disagreement: observed 2 (two cells one step apart); by chance every one of the 25
    # cells holds 1/5, so sum |i-j| = 40 -> 8 (linear), sum (i-j)^2 = 100 -> 20 (quadratic)
    assert cohen_kappa(a, b, weights="linear") == pytest.approx(1 - 2 / 8)
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(1 - 2 / 20)
    # a disagreement of 4 steps costs more than one of 1 step
    assert cohen_kappa([1, 5, 3], [5, 1, 3], weights="quadratic") < cohen_kappa([1, 2, 3], [2, 1, 3], weights="quadratic")
    assert mean_absolute_error([1, 2, 3], [1, 2, 6]) == 1.0
    assert root_mean_squared_error([1, 2, 3], [1, 2, 6]) == pytest.approx(3 ** 0.5)
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa(a, b, weights="cubic")
    with pytest.raises(ValueError, match="same length"):
        mean_absolute_error([1, 2], [1])


@needs_sklearn
@pytest.mark.parametrize("seed", range(6))
def test_kappa_mae_rmse_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 80))
    t = rng.integers(1, 11, n)  # 1-10 ratings
    p = np.clip(t + rng.integers(-2, 3, n), 1, 10)  # a second rater, mostly close
    for w in (None, "linear", "quadratic"):
        assert cohen_kappa(t, p, weights=w) == pytest.approx(sk.cohen_kappa_score(t, p, weights=w)), w
        scale = list(range(1, 11))
        assert cohen_kappa(t, p, labels=scale, weights=w) == pytest.approx(
            sk.cohen_kappa_score(t, p, labels=scale, weights=w)), w
    assert mean_absolute_error(t, p) == pytest.approx(sk.mean_absolute_error(t, p))
    assert root_mean_squared_error(t, p) == pytest.approx(sk.root_mean_squared_error(t, p))


def test_kendall_tau_equals_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for k in (2, 3, 5, 8):
        a = list(range(k))
        b = a[:]
        rng.shuffle(b)
        ref = scipy_stats.kendalltau([a.index(x) for x in a], [b.index(x) for x in a]).statistic
        assert kendall_tau(a, b) == pytest.approx(ref)


def rankings(n: int, k: int = 4, seed: int = 0) -> list[Ranking]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        order = list(range(k))
        rng.shuffle(order)
        out.append(Ranking([{"role": "user", "content": f"topic {i % 5}"}], [f"chat {i}.{j}" for j in range(k)], order))
    return out


def test_identical_files_agree_fully_and_reversed_ones_disagree():
    a = rankings(40)
    same = agreement(a, a, n_boot=200)
    assert same["pairs"]["n"] == 40 * 6 and same["pairs"]["agreement"] == 1.0
    assert same["pairs"]["kappa"] == pytest.approx(1.0) and same["pairs"]["agreement_ci95"] == [1.0, 1.0]
    assert same["rankings"]["kendall_tau"] == 1.0 and same["rankings"]["top1"] == 1.0
    rev = [Ranking(r.prompt, r.responses, r.order[::-1]) for r in a]
    opposite = agreement(a, rev, n_boot=200)
    assert opposite["pairs"]["agreement"] == 0.0 and opposite["pairs"]["kappa"] < -0.9
    assert opposite["rankings"]["kendall_tau"] == -1.0 and opposite["rankings"]["top1"] == 0.0
    lo, hi = opposite["pairs"]["kappa_ci95"]
    assert lo <= opposite["pairs"]["kappa"] <= hi < 0


def test_items_match_by_content_not_position():
    a = rankings(30, seed=1)
    b = rankings(30, seed=2)  # the same items, independent orders
    # B lists its rankings in reverse, and splits every 4th into three K=2 rankings (as a judge
    # splits a ranking with tied scores); B's pairs are matched to A's by text, whatever the order
    b2: list[Ranking] = []
    kept: list[set[frozenset[str]]] = []  # per item: the pairs B ordered
    for g, r in enumerate(b):
        split = (29 - g) % 4 == 0
        pairs = r.pairs()[:3] if split else r.pairs()
        kept.append({frozenset((r.responses[x], r.responses[y])) for x, y in pairs})
    for i, r in enumerate(reversed(b)):
        if i % 4:
            b2.append(r)
        else:
            b2 += [Ranking(r.prompt, [r.responses[x], r.responses[y]], [0, 1]) for x, y in r.pairs()[:3]]
    same = []
    for g, r in enumerate(a):
        pos_b = {b[g].responses[i]: p for p, i in enumerate(b[g].order)}
        for w, lose in r.pairs():
            x, y = r.responses[w], r.responses[lose]
            if frozenset((x, y)) in kept[g]:
                same.append(pos_b[x] < pos_b[y])
    got = agreement(a, b2, n_boot=200)
    assert got["pairs"]["n"] == len(same) == 22 * 6 + 8 * 3  # 8 items split, 3 of their 6 pairs kept
    assert got["pairs"]["agreement"] == pytest.approx(float(np.mean(same)))
    assert got["rankings"]["n"] == sum((29 - g) % 4 != 0 for g in range(30))
    lo, hi = got["pairs"]["agreement_ci95"]
    assert lo <= got["pairs"]["agreement"] <= hi and hi - lo < 0.4
    assert agreement(a, [], n_boot=200) == {"pairs": {"n": 0, "rankings": 0}, "rankings": {"n": 0}}


def test_rank_agree_command_writes_summary_and_reports_bad_input(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    save_rankings(a, rankings(20))
    save_rankings(b, rankings(20, seed=5))
    out = tmp_path / "agree.json"
    assert rank_cli.main(["agree", str(a), str(b), "--out", str(out), "--bootstrap", "200"]) == 0
    summary = json.loads(out.read_text())
    assert summary["pairs"]["n"] == 120 and summary["rankings"]["n"] == 20
    assert summary["files"]["a_rankings"] == 20
    assert "Cohen's kappa" in capsys.readouterr().out
    other = tmp_path / "other.jsonl"
    save_rankings(other, [Ranking([{"role": "user", "content": "else"}], ["x", "y"], [0, 1])])
    with pytest.raises(InputError, match="shares no ranked pair"):
        rank_cli.main(["agree", str(a), str(other)])
    b.write_text(b.read_text() + '{"prompt": "p", "responses": ["x", "y"], "ranking": [0, 0]}\n')
    with pytest.raises(InputError) as e:
        rank_cli.main(["agree", str(a), str(b)])
    assert e.value.line == 21 and str(b) in str(e.value)


def test_ratings_then_judge_model_then_agree(tmp_path):
    """The benchmark's path on a tiny judge: people's ratings, a model ranks the same chats, agree."""
    def chat(i: int, topic: str, score: int) -> Chat:
        turns = [Turn("A", f"hello about {topic} number {i}"), Turn("B", "well " * (i % 7 + 1))]
        return Chat(f"c{i}", topic, {"witty": score, "upbeat": score, "interesting": score}, turns)

    chats = [chat(i, f"topic {i % 3}", 1 + i % 10) for i in range(60)]
    ratings = tmp_path / "runs" / "x" / "rankings" / "ratings.jsonl"
    save_rankings(ratings, ratings_rankings(chats, n=12, k=4))
    tok = Tokenizer.train([builtin_samples()["english"]] * 2, 300)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, n_kv_head=2,
                      intermediate_size=64, max_seq_len=128)
    save_model(tmp_path / "judge" / "sft", GPT(cfg))
    tok.save(tmp_path / "judge" / "tokenizer")
    judged = tmp_path / "judge.jsonl"
    assert rank_cli.main(["judge", "--from", str(tmp_path / "judge" / "sft"), "--candidates", str(ratings),
                          "--out", str(judged), "--device", "cpu"]) == 0
    assert rank_cli.main(["agree", str(ratings), str(judged), "--out", str(tmp_path / "s.json"),
                          "--bootstrap", "200"]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    people = load_rankings(ratings)
    assert s["pairs"]["n"] == 6 * len(people)  # the judge ordered every pair of the people's chats
    assert -1.0 <= s["pairs"]["kappa"] <= 1.0 and 0.0 <= s["pairs"]["agreement"] <= 1.0

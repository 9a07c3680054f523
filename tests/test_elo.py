"""Elo from votes: Bradley-Terry recovers planted strengths, equals a logistic regression, ignores
vote order (online Elo does not), and its bootstrap intervals cover the truth and shrink; the
`gptlab arena` command reads JSONL with file:line errors and writes a leaderboard, JSON and a plot."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from gptlab.errors import InputError
from gptlab.eval import arena_cli
from gptlab.eval.elo import (
    Vote,
    bootstrap_ratings,
    bradley_terry,
    leaderboard,
    normalise_winner,
    online_elo,
)

TRUE = {"alpha": 1200.0, "beta": 1000.0, "gamma": 800.0}  # mean 1000, as bradley_terry centres


def simulate(
    n: int, seed: int, truth: dict[str, float] = TRUE, tie_rate: float = 0.0
) -> list[Vote]:
    """Votes between random pairs, the winner drawn from the Elo win probability."""
    rng = random.Random(seed)
    names = sorted(truth)
    votes = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        if rng.random() < tie_rate:
            votes.append(Vote(a, b, "tie"))
            continue
        p_a = 1 / (1 + 10 ** ((truth[b] - truth[a]) / 400))
        votes.append(Vote(a, b, "a" if rng.random() < p_a else "b"))
    return votes


def test_bt_recovers_planted_ranking():
    r = bradley_terry(simulate(3000, seed=0))
    assert sorted(r, key=r.get, reverse=True) == ["alpha", "beta", "gamma"]
    assert np.mean(list(r.values())) == pytest.approx(1000.0)
    for m, true in TRUE.items():
        assert abs(r[m] - true) < 40, (m, r[m])


def test_bt_equals_logistic_regression_like_lmsys():
    """LMSYS's compute_mle_elo: logistic regression on +1/-1 design rows, a decisive vote entered
    twice and a tie once each way (so a tie is half a win for each side)."""
    lm = pytest.importorskip("sklearn.linear_model")
    votes = simulate(600, seed=1, tie_rate=0.2)
    models = sorted(TRUE)
    X, y = [], []
    for a, b, w in votes:
        row = np.zeros(len(models))
        row[models.index(a)], row[models.index(b)] = 1, -1
        if w == "tie":
            X += [row, row]
            y += [1, 0]
        else:
            X += [row, row]
            y += [1 if w == "a" else 0] * 2
    lr = lm.LogisticRegression(fit_intercept=False, C=1e8, tol=1e-10, max_iter=1000).fit(
        np.array(X), np.array(y)
    )
    ref = lr.coef_[0] * 400 / math.log(10)
    ref = ref - ref.mean() + 1000  # centred as ours
    ours = bradley_terry(votes)
    for i, m in enumerate(models):
        assert ours[m] == pytest.approx(ref[i], abs=0.05), m


def test_order_dependence_online_varies_bt_does_not():
    votes = simulate(400, seed=2)
    online, bt = [], []
    for s in range(5):
        shuffled = votes[:]
        random.Random(s).shuffle(shuffled)
        online.append(online_elo(shuffled, k=16)["alpha"])
        bt.append(bradley_terry(shuffled)["alpha"])
    assert max(online) - min(online) > 5.0  # the online rating is a function of the order
    assert max(bt) - min(bt) < 1e-6
    assert online_elo(votes, k=16) == online_elo(list(votes), k=16)  # but deterministic per order


def test_online_elo_single_update_by_hand():
    r = online_elo([("x", "y", "a")], k=32)
    assert r == {"x": 1016.0, "y": 984.0}  # equal ratings: expected 0.5, step 32 * 0.5
    assert online_elo([("x", "y", "tie")], k=32) == {"x": 1000.0, "y": 1000.0}


def test_anchor_and_aliases():
    votes = simulate(500, seed=3)
    free = bradley_terry(votes)
    anchored = bradley_terry(votes, anchor="gamma")
    assert anchored["gamma"] == 1000.0
    assert anchored["alpha"] - anchored["beta"] == pytest.approx(free["alpha"] - free["beta"])
    lmsys = [(a, b, {"a": "model_a", "b": "model_b"}[w]) for a, b, w in votes]
    assert bradley_terry(lmsys) == free
    assert bradley_terry([{"model_a": a, "model_b": b, "winner": w} for a, b, w in votes]) == free
    assert normalise_winner("tie (bothbad)") == "tie"
    with pytest.raises(ValueError, match="winner"):
        bradley_terry([("x", "y", "left")])
    with pytest.raises(ValueError, match="itself"):
        bradley_terry([("x", "x", "a")])
    with pytest.raises(ValueError, match="anchor"):
        bradley_terry(votes, anchor="nobody")


def test_undefeated_model_gets_a_finite_top_rating():
    votes = [("champ", "b", "a")] * 5 + [("b", "c", "a"), ("c", "b", "a"), ("champ", "c", "a")]
    r = bradley_terry(votes)
    assert all(math.isfinite(v) for v in r.values())
    assert max(r, key=r.get) == "champ"


def test_bootstrap_intervals_cover_truth_and_shrink():
    covered, trials = 0, 30
    for seed in range(trials):
        ci = bootstrap_ratings(simulate(300, seed=100 + seed), n=200, seed=seed)
        covered += all(lo <= TRUE[m] <= hi for m, (lo, hi) in ci.items())
    # nominal 95% per model; all three at once at least ~85% of the time
    assert covered / trials >= 0.8, covered

    def width(n: int) -> float:
        ci = bootstrap_ratings(simulate(n, seed=7), n=200, seed=0)
        return float(np.mean([hi - lo for lo, hi in ci.values()]))

    w_small, w_big = width(250), width(4000)
    assert w_big < w_small / 2.5  # ~1/sqrt(n): 16x the votes, ~1/4 the width


def test_bootstrap_online_and_anchor():
    votes = simulate(300, seed=4)
    ci = bootstrap_ratings(votes, n=50, method="online", k=16)
    assert set(ci) == set(TRUE) and all(lo < hi for lo, hi in ci.values())
    ci = bootstrap_ratings(votes, n=50, anchor="beta")
    assert ci["beta"] == (1000.0, 1000.0)  # the anchor is fixed by definition
    assert ci["alpha"][0] > 1000.0 > ci["gamma"][1]


def test_leaderboard_counts_and_ranks():
    votes = [("a", "b", "a"), ("a", "b", "tie"), ("b", "c", "a"), ("c", "a", "b")]
    rows = leaderboard(votes)
    assert [r["model"] for r in rows] == ["a", "b", "c"]
    a = rows[0]
    assert (a["rank"], a["games"], a["wins"], a["losses"], a["ties"]) == (1, 3, 2, 0, 1)
    assert a["win_rate"] == pytest.approx(2.5 / 3)
    assert a["ci"] is None
    # with intervals on few votes, models that cannot be told apart share rank 1
    rows = leaderboard(simulate(40, seed=5), n_bootstrap=100)
    assert rows[0]["rank"] == 1 and all(r["ci"] is not None for r in rows)
    assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))


def test_arena_cli_end_to_end(tmp_path, capsys):
    votes = tmp_path / "votes.jsonl"
    _write(
        votes,
        [{"model_a": a, "model_b": b, "winner": w} for a, b, w in simulate(300, seed=6)] + [""],
    )
    out, plot = tmp_path / "r" / "ratings.json", tmp_path / "ratings.png"
    rc = arena_cli.main([str(votes), "--bootstrap", "100", "--out", str(out), "--plot", str(plot)])
    assert rc == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "rank" in lines[0] and "95% CI" in lines[0]
    assert lines[2].split()[1] == "alpha"  # after the header and its rule
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["leaderboard"]] == ["alpha", "beta", "gamma"]
    assert data["votes"] == 300 and data["method"] == "bt" and data["bootstrap"] == 100
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "records, line, msg",
    [
        ([{"model_a": "x", "model_b": "y", "winner": "a"}, "{not json"], 2, "JSON"),
        ([{"model_a": "x", "winner": "a"}], 1, "model_b"),
        (
            [
                {"model_a": "x", "model_b": "y", "winner": "a"},
                {"model_a": "x", "model_b": "y", "winner": "z"},
            ],
            2,
            "winner",
        ),
        ([{"model_a": "x", "model_b": "x", "winner": "a"}], 1, "itself"),
        ([["x", "y", "a"]], 1, "object"),
    ],
)
def test_arena_cli_errors_name_file_and_line(tmp_path, records, line, msg):
    votes = tmp_path / "v.jsonl"
    _write(votes, records)
    with pytest.raises(InputError, match=msg) as e:
        arena_cli.main([str(votes)])
    assert e.value.line == line and e.value.where == str(votes)


def test_arena_cli_missing_and_empty(tmp_path):
    with pytest.raises(InputError, match="not found"):
        arena_cli.main([str(tmp_path / "nope.jsonl")])
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no votes"):
        arena_cli.main([str(empty)])

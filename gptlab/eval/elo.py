"""Elo ratings from pairwise votes: online Elo and a Bradley-Terry fit, with bootstrap intervals.

A vote is `(model_a, model_b, winner)` with winner "a", "b" or "tie". Two estimators:

- `online_elo`: the chess update, one vote at a time with step `k`. Its result depends on the
  order of the votes, and it weighs recent votes more (built for players whose skill changes).
- `bradley_terry`: the maximum-likelihood fit of P(i beats j) = 1 / (1 + 10^((R_j - R_i)/400)),
  as LMSYS Chatbot Arena computes its leaderboard (a tie counts half a win for each side, as
  their logistic regression does with ties entered once each way). It depends only on the vote
  counts, so the order is irrelevant. Solved by Newton's method on the concave log-likelihood;
  a tiny ridge (`reg`) keeps ratings finite for a model that never loses and pins down
  disconnected groups, and is negligible otherwise.

Ratings are on the Elo scale: the mean rating is 1000, or the `anchor` model's rating is 1000.
`bootstrap_ratings` resamples votes with replacement (as a multinomial over distinct votes,
which is the same draw) and refits, giving percentile intervals.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

WINNERS = ("a", "b", "tie")
# The spellings in LMSYS's public vote dumps, read as ours.
WINNER_ALIASES = {
    "model_a": "a",
    "model_b": "b",
    "tie (bothbad)": "tie",
    "both_bad": "tie",
    "tie_bothbad": "tie",
}


class Vote(NamedTuple):
    model_a: str
    model_b: str
    winner: str  # "a" | "b" | "tie"


def normalise_winner(w: str) -> str:
    """'model_a' -> 'a', 'tie (bothbad)' -> 'tie'; raises ValueError on anything else."""
    w = WINNER_ALIASES.get(w, w)
    if w not in WINNERS:
        raise ValueError(f"winner must be one of {', '.join(WINNERS)}, got {w!r}")
    return w


def _as_votes(votes: Iterable[Sequence[str] | dict]) -> list[Vote]:
    out = []
    for v in votes:
        # a JSONL record as a dict, or any (model_a, model_b, winner) sequence
        a, b, w = (v["model_a"], v["model_b"], v["winner"]) if isinstance(v, dict) else v
        if a == b:
            raise ValueError(f"a model cannot play itself: {a!r}")
        out.append(Vote(a, b, normalise_winner(w)))
    if not out:
        raise ValueError("no votes")
    return out


def models_of(votes: Iterable[Sequence[str]]) -> list[str]:
    """Every model named in the votes, sorted."""
    return sorted({m for v in votes for m in v[:2]})


def online_elo(
    votes: Iterable[Sequence[str]], k: float = 4.0, init: float = 1000.0, scale: float = 400.0
) -> dict[str, float]:
    """Sequential Elo updates in the order given (k=4 as LMSYS's notebook; chess uses 10-40)."""
    rating: dict[str, float] = {}
    for a, b, w in _as_votes(votes):
        ra, rb = rating.setdefault(a, init), rating.setdefault(b, init)
        ea = 1.0 / (1.0 + 10.0 ** ((rb - ra) / scale))  # expected score of a
        sa = {"a": 1.0, "b": 0.0, "tie": 0.5}[w]
        rating[a] = ra + k * (sa - ea)
        rating[b] = rb - k * (sa - ea)  # zero-sum: b's expected score is 1 - ea
    return rating


def win_matrix(votes: Iterable[Sequence[str]], models: Sequence[str]) -> np.ndarray:
    """W[i, j] = wins of models[i] over models[j], a tie adding 0.5 to both W[i, j] and W[j, i]."""
    index = {m: i for i, m in enumerate(models)}
    W = np.zeros((len(models), len(models)))
    for a, b, w in _as_votes(votes):
        i, j = index[a], index[b]
        if w == "a":
            W[i, j] += 1
        elif w == "b":
            W[j, i] += 1
        else:
            W[i, j] += 0.5
            W[j, i] += 0.5
    return W


def fit_strengths(
    W: np.ndarray, reg: float = 1e-6, tol: float = 1e-9, max_iter: int = 100
) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry strengths theta (natural-log odds) from a win matrix.

    Maximises sum_ij W_ij log sigmoid(theta_i - theta_j) - reg/2 |theta|^2 by damped Newton steps.
    """
    n = W.shape[0]
    N = W + W.T  # games between each pair
    theta = np.zeros(n)

    def objective(th: np.ndarray) -> float:
        d = th[:, None] - th[None, :]
        return float(-(W * np.logaddexp(0.0, -d)).sum() - 0.5 * reg * th @ th)

    f = objective(theta)
    for _ in range(max_iter):
        P = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))  # P[i, j] = P(i beats j)
        grad = (W - N * P).sum(axis=1) - reg * theta
        C = N * P * (1 - P)  # curvature of each pair's term
        H = C - np.diag(C.sum(axis=1)) - reg * np.eye(n)  # negative definite thanks to reg
        step = np.linalg.solve(H, -grad)
        t = 1.0
        # Newton is exact near the optimum; halve the step far from it so the objective rises
        while t > 1e-8:
            new = theta + t * step
            f_new = objective(new)
            if f_new >= f - 1e-12:
                break
            t /= 2
        # The likelihood ignores a common shift and the ridge prefers mean 0, so centring only
        # helps; it also drops the near-singular all-ones direction, which would stall the test.
        moved = new - new.mean() - theta
        theta, f = new - new.mean(), objective(new - new.mean())
        if np.max(np.abs(moved)) < tol:
            break
    return theta


def to_elo(
    theta: np.ndarray,
    models: Sequence[str],
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    scale: float = 400.0,
) -> dict[str, float]:
    """Strengths -> Elo points (400 points = 10x odds); the mean, or `anchor`, at `anchor_rating`."""
    r = theta * scale / math.log(10.0)
    if anchor is None:
        r = r - r.mean()
    else:
        if anchor not in models:
            raise ValueError(f"anchor model {anchor!r} is not in the votes")
        r = r - r[list(models).index(anchor)]
    return {m: float(anchor_rating + x) for m, x in zip(models, r, strict=True)}


def bradley_terry(
    votes: Iterable[Sequence[str]],
    anchor: str | None = None,
    anchor_rating: float = 1000.0,
    scale: float = 400.0,
    reg: float = 1e-6,
) -> dict[str, float]:
    """Order-independent Elo ratings by maximum likelihood (LMSYS's `compute_mle_elo`)."""
    votes = _as_votes(votes)
    models = models_of(votes)
    theta = fit_strengths(win_matrix(votes, models), reg=reg)
    return to_elo(theta, models, anchor, anchor_rating, scale)


def bootstrap_ratings(
    votes: Iterable[Sequence[str]],
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    method: str = "bt",
    anchor: str | None = None,
    k: float = 4.0,
) -> dict[str, tuple[float, float]]:
    """Percentile (lo, hi) per model over `n` refits on votes resampled with replacement.

    For `method="online"` each resample is also shuffled (LMSYS's online bootstrap), so the
    interval includes the order dependence.
    """
    votes = _as_votes(votes)
    models = models_of(votes)
    if anchor is not None and anchor not in models:
        raise ValueError(f"anchor model {anchor!r} is not in the votes")
    rng = np.random.default_rng(seed)
    samples = np.empty((n, len(models)))
    if method == "bt":
        # Resampling votes only changes how often each distinct (a, b, winner) occurs: draw those
        # counts from one multinomial and fit the summed win matrix, instead of rebuilding lists.
        counts = Counter(votes)
        distinct = sorted(counts)
        per = np.stack([win_matrix([d], models) for d in distinct])  # (D, M, M)
        p = np.array([counts[d] for d in distinct], dtype=np.float64) / len(votes)
        draws = rng.multinomial(len(votes), p, size=n)
        for s in range(n):
            r = to_elo(fit_strengths(np.tensordot(draws[s], per, axes=1)), models, anchor)
            samples[s] = [r[m] for m in models]
    elif method == "online":
        for s in range(n):
            idx = rng.integers(0, len(votes), len(votes))
            r = online_elo([votes[i] for i in idx], k=k)
            # a model missing from a resample gets NaN (a whole draw, if the anchor is missing)
            shift = 0.0 if anchor is None else 1000.0 - r.get(anchor, np.nan)
            samples[s] = [r.get(m, np.nan) + shift for m in models]
    else:
        raise ValueError(f"method must be 'bt' or 'online', got {method!r}")
    lo = np.nanquantile(samples, alpha / 2, axis=0)
    hi = np.nanquantile(samples, 1 - alpha / 2, axis=0)
    return {m: (float(lo[i]), float(hi[i])) for i, m in enumerate(models)}


def ratings(
    votes: Iterable[Sequence[str]], method: str = "bt", anchor: str | None = None, k: float = 4.0
) -> dict[str, float]:
    """Point ratings by `method` ("bt" or "online")."""
    if method == "bt":
        return bradley_terry(votes, anchor=anchor)
    if method == "online":
        r = online_elo(votes, k=k)
        if anchor is not None:
            if anchor not in r:
                raise ValueError(f"anchor model {anchor!r} is not in the votes")
            shift = 1000.0 - r[anchor]
            r = {m: x + shift for m, x in r.items()}
        return r
    raise ValueError(f"method must be 'bt' or 'online', got {method!r}")


def leaderboard(
    votes: Iterable[Sequence[str]],
    n_bootstrap: int = 0,
    method: str = "bt",
    anchor: str | None = None,
    seed: int = 0,
    k: float = 4.0,
) -> list[dict]:
    """Rows sorted by rating: rank, model, rating, ci (lo, hi) or None, games, wins, losses, ties, win_rate.

    With intervals, rank is LMSYS's: 1 + the number of models whose interval lies wholly above
    this one's, so models that cannot be told apart share a rank. Win rate counts a tie as half.
    """
    votes = _as_votes(votes)
    point = ratings(votes, method, anchor, k)
    ci = (
        bootstrap_ratings(votes, n_bootstrap, seed, method=method, anchor=anchor, k=k)
        if n_bootstrap
        else None
    )
    stats = {m: {"games": 0, "wins": 0, "losses": 0, "ties": 0} for m in point}
    for a, b, w in votes:
        stats[a]["games"] += 1
        stats[b]["games"] += 1
        if w == "tie":
            stats[a]["ties"] += 1
            stats[b]["ties"] += 1
        else:
            win, lose = (a, b) if w == "a" else (b, a)
            stats[win]["wins"] += 1
            stats[lose]["losses"] += 1
    order = sorted(point, key=lambda m: -point[m])
    rows = []
    for i, m in enumerate(order):
        s = stats[m]
        if ci is None:
            rank = i + 1
        else:
            rank = 1 + sum(1 for o in order if ci[o][0] > ci[m][1])
        rows.append(
            {
                "rank": rank,
                "model": m,
                "rating": point[m],
                "ci": ci[m] if ci else None,
                **s,
                "win_rate": (s["wins"] + 0.5 * s["ties"]) / s["games"],
            }
        )
    return rows

"""The Chinchilla law L(N, D) = E + A / N^alpha + B / D^beta: its fit and the compute-optimal split.

Fit (Hoffmann et al. 2022, approach 3): minimise the Huber loss (delta 1e-3) between log L and
    log L_hat = logsumexp(a - alpha log N, b - beta log D, e),   A = e^a, B = e^b, E = e^e,
with L-BFGS-B. Working in log space weighs every run alike whatever its loss; the Huber loss (an L1
for residuals past delta) keeps one noisy run from dragging the exponents. The objective has many
local minima, so, as in the paper, it starts from a grid of initial points: the grid is scored in
one vectorised pass and L-BFGS runs from its best few points (not from all ~26k of them).

Compute-optimal split (the paper's eq. 4): under C = 6·N·D, minimising L gives
    N_opt(C) = G (C/6)^(beta/(alpha+beta)),  D_opt(C) = (1/G) (C/6)^(alpha/(alpha+beta)),
    G = (alpha A / (beta B))^(1/(alpha+beta)),
so the tokens-per-parameter ratio D_opt/N_opt depends on C unless alpha == beta. Chinchilla's
headline ~20 tokens per parameter comes from its approaches 1 and 2; its published approach-3 fit
(E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28) gives ~90 at 5.76e23 FLOPs (Besiroglu et al.
2024, "Chinchilla scaling: a replication attempt", refit it and land near 20).

A cross-check that needs no five-parameter fit (approach 2): at one budget, the parabola of loss
against log N through that budget's runs has its minimum at the compute-optimal N.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

HUBER_DELTA = 1e-3  # Hoffmann et al.'s delta
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
CHINCHILLA_TOKENS_PER_PARAM = 20.0
_BOUNDS = [(-10.0, 60.0), (-10.0, 60.0), (-5.0, 3.0), (0.01, 3.0), (0.01, 3.0)]  # a, b, e, alpha, beta
_GRID = {
    "a": np.arange(0.0, 25.1, 2.5),
    "b": np.arange(0.0, 25.1, 2.5),
    "e": np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]),
    "alpha": np.array([0.1, 0.25, 0.5, 0.75, 1.0, 1.5]),
    "beta": np.array([0.1, 0.25, 0.5, 0.75, 1.0, 1.5]),
}
_STARTS = 24  # L-BFGS runs from this many of the best grid points


@dataclass
class LawFit:
    """A fitted L(N, D) = E + A/N^alpha + B/D^beta, with how well it fits the runs it came from."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    rmse_log: float  # root mean square of log L_hat - log L over the runs
    points: int  # runs fitted

    def predict(self, n: Any, d: Any) -> Any:
        """The law at (N, D); numpy arrays broadcast."""
        return self.E + self.A / np.power(n, self.alpha) + self.B / np.power(d, self.beta)

    def optimal(self, flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising the law under 6·N·D = flops.

        With Chinchilla's published fit: optimal(5.76e23) -> (~3.2e10, ~3.0e12).
        """
        s = self.alpha + self.beta
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        n = g * (flops / 6.0) ** (self.beta / s)
        return n, flops / (6.0 * n)

    def tokens_per_param(self, flops: float) -> float:
        n, d = self.optimal(flops)
        return d / n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at_bounds(self) -> list[str]:
        """The exponents the fit pushed to a bound of its search: the runs do not pin them down."""
        names = ("alpha", "beta")
        return [k for k, (lo, hi) in zip(names, _BOUNDS[3:]) if not lo + 1e-6 < getattr(self, k) < hi - 1e-6]


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _objective(
    theta: np.ndarray, logn: np.ndarray, logd: np.ndarray, logl: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber loss of the log-space residuals and its gradient in (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * logn, b - beta * logd, np.full_like(logn, e)])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    pred = top + np.log(total)
    w /= total  # d pred / d (each term): the softmax weights
    r = pred - logl
    g = np.clip(r, -delta, delta)  # d huber / d r
    grad = np.array([
        (g * w[0]).sum(), (g * w[1]).sum(), (g * w[2]).sum(),
        -(g * w[0] * logn).sum(), -(g * w[1] * logd).sum(),
    ])
    return float(_huber(r, delta).sum()), grad


def _grid_starts(logn: np.ndarray, logd: np.ndarray, logl: np.ndarray, delta: float, k: int) -> np.ndarray:
    """The k grid points (rows of a, b, e, alpha, beta) with the lowest objective, scored at once."""
    grid = np.array(list(itertools.product(*_GRID.values())))  # (G, 5)
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    terms = np.stack([a - alpha * logn, b - beta * logd, np.broadcast_to(e, (len(grid), len(logn)))])
    pred = np.logaddexp(np.logaddexp(terms[0], terms[1]), terms[2])
    scores = _huber(pred - logl, delta).sum(axis=1)
    return grid[np.argsort(scores)[:k]]


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """L-BFGS-B calls BLAS on 5-vectors; on a busy machine a multi-threaded BLAS spins and makes
    the fit ~50x slower (0.3 s -> 17 s measured on a loaded 2-core VM). threadpoolctl is optional."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fit_law(n: Any, d: Any, loss: Any, delta: float = HUBER_DELTA) -> LawFit:
    """Fit E, A, B, alpha, beta to runs (N params, D tokens, final loss); at least 5 runs."""
    logn, logd, logl = (np.log(np.asarray(x, dtype=np.float64)) for x in (n, d, loss))
    if len(logl) < 5:
        raise ValueError(f"the law has 5 parameters: fit it to at least 5 runs, not {len(logl)}")
    if not (np.isfinite(logn).all() and np.isfinite(logd).all() and np.isfinite(logl).all()):
        raise ValueError("N, D and the losses must all be positive and finite")
    data = (logn, logd, logl, delta)
    with _one_blas_thread():
        best = min(
            (minimize(_objective, x0, args=data, jac=True, method="L-BFGS-B", bounds=_BOUNDS)
             for x0 in _grid_starts(logn, logd, logl, delta, _STARTS)),
            key=lambda res: res.fun,
        )
        # Polish the winner with tight tolerances: near the optimum the residuals, and so the
        # gradient, are tiny, and scipy's default stops there a little short.
        best = minimize(_objective, best.x, args=data, jac=True, method="L-BFGS-B", bounds=_BOUNDS,
                        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})
    a, b, e, alpha, beta = (float(v) for v in best.x)
    fit = LawFit(math.exp(e), math.exp(a), math.exp(b), alpha, beta, 0.0, len(logl))
    fit.rmse_log = float(np.sqrt(np.mean((np.log(fit.predict(np.exp(logn), np.exp(logd))) - logl) ** 2)))
    return fit


def isoflop_minimum(n: Any, loss: Any) -> float | None:
    """N at the vertex of the parabola (loss against log N) through one budget's best run and
    its two neighbours in size: the local minimum, as Chinchilla's approach 2 reads it.

    None when the best run is the smallest or the largest size (the optimum lies past the sizes
    tried: not measured) or there are fewer than 3 sizes.
    isoflop_minimum([1e5, 1e6, 1e7], [3.0, 2.0, 3.0]) -> 1e6.
    """
    order = np.argsort(np.asarray(n, dtype=np.float64))
    x = np.log(np.asarray(n, dtype=np.float64)[order])
    y = np.asarray(loss, dtype=np.float64)[order]
    best = int(np.argmin(y))
    if len(x) < 3 or best in (0, len(x) - 1):
        return None
    c2, c1, _ = np.polyfit(x[best - 1 : best + 2], y[best - 1 : best + 2], 2)
    return float(math.exp(-c1 / (2 * c2)))  # c2 > 0: the middle point is the lowest of the three

"""Classifier, rater-agreement and regression metrics in plain numpy, each checked against scikit-learn
in tests/test_eval_metrics.py and tests/test_agreement.py.

Written here rather than imported so evaluation (reward-model accuracy, task scoring) needs no
scikit-learn at run time, and so the definitions are in one readable place:

- precision/recall/F1 follow scikit-learn's conventions: `binary` scores `pos_label` only,
  `micro` pools every decision (equal to accuracy for single-label problems), `macro` is the
  unweighted mean over the labels seen in either array; a 0/0 ratio counts as 0.
- ROC AUC is the Mann-Whitney statistic: the chance a random positive outscores a random
  negative, ties counting one half (average ranks), so it needs no threshold sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

ArrayLike = Sequence[Any] | np.ndarray


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D and the same length, got {t.shape} and {p.shape}"
        )
    if t.size == 0:
        raise ValueError("empty input")
    return t, p


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with 0 where den == 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of exact matches: accuracy([0, 1, 1], [0, 1, 0]) == 2/3."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None
) -> np.ndarray:
    """C[i, j] = count of true label i predicted as j, labels sorted (or as given).

    confusion_matrix([0, 1, 1], [0, 0, 1]) == [[1, 0], [1, 1]]
    """
    t, p = _pair(y_true, y_pred)
    labs = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    index = {v: i for i, v in enumerate(labs.tolist())}
    cm = np.zeros((len(labs), len(labs)), dtype=np.int64)
    for a, b in zip(t.tolist(), p.tolist(), strict=True):
        if a in index and b in index:  # like scikit-learn: pairs outside `labels` are dropped
            cm[index[a], index[b]] += 1
    return cm


def precision_recall_f1(
    y_true: ArrayLike, y_pred: ArrayLike, average: str = "binary", pos_label: Any = 1
) -> tuple[float, float, float]:
    """(precision, recall, F1) averaged as `binary`, `micro` or `macro` (see the module docstring)."""
    t, p = _pair(y_true, y_pred)
    if average == "binary":
        tp = np.sum((t == pos_label) & (p == pos_label))
        fp = np.sum((t != pos_label) & (p == pos_label))
        fn = np.sum((t == pos_label) & (p != pos_label))
        return (
            float(_ratio(tp, tp + fp)),
            float(_ratio(tp, tp + fn)),
            float(_ratio(2 * tp, 2 * tp + fp + fn)),
        )
    cm = confusion_matrix(t, p)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp  # predicted as the label, but wrong
    fn = cm.sum(axis=1) - tp  # the label, predicted as something else
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        return (
            float(_ratio(tp, tp + fp)),
            float(_ratio(tp, tp + fn)),
            float(_ratio(2 * tp, 2 * tp + fp + fn)),
        )
    if average == "macro":
        # macro F1 is the mean of per-label F1s, not the F1 of the mean precision and recall
        return (
            float(_ratio(tp, tp + fp).mean()),
            float(_ratio(tp, tp + fn).mean()),
            float(_ratio(2 * tp, 2 * tp + fp + fn).mean()),
        )
    raise ValueError(f"average must be 'binary', 'micro' or 'macro', got {average!r}")


def average_ranks(x: ArrayLike) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank: average_ranks([10, 20, 10]) == [1.5, 3, 1.5]."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # boundaries of runs of equal values in sorted order
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(xs), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve for binary labels {0, 1} (or booleans), ties counted as one half.

    roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    """
    t, s = _pair(y_true, y_score)
    pos = t.astype(bool)
    if set(np.unique(t).tolist()) - {0, 1}:
        raise ValueError("roc_auc needs binary labels 0/1")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc is undefined when only one class is present")
    r = average_ranks(s.astype(np.float64))
    # Mann-Whitney U of the positives, normalised by the number of (positive, negative) pairs
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def centred_accuracy(acc: float, baseline: float) -> float:
    """Accuracy rescaled so chance is 0 and perfect is 1: (acc - baseline) / (1 - baseline).

    centred_accuracy(0.625, 0.25) == 0.5  (4-way multiple choice, halfway from chance to perfect)
    """
    if baseline >= 1:
        raise ValueError(f"baseline must be < 1, got {baseline}")
    return (acc - baseline) / (1 - baseline)


def classification_report(
    y_true: ArrayLike, y_pred: ArrayLike, y_score: ArrayLike | None = None
) -> dict[str, Any]:
    """Accuracy, micro/macro P/R/F1, per-label P/R/F1/support, confusion matrix; binary extras.

    With exactly the labels {0, 1} the binary P/R/F1 of label 1 are added, and `roc_auc` when
    `y_score` (the score of label 1) is given. Everything is plain Python, ready for JSON.
    """
    t, p = _pair(y_true, y_pred)
    labels = np.unique(np.concatenate([t, p]))
    cm = confusion_matrix(t, p, labels)
    tp = np.diag(cm).astype(np.float64)
    prec, rec = _ratio(tp, cm.sum(axis=0)), _ratio(tp, cm.sum(axis=1))
    f1 = _ratio(2 * tp, cm.sum(axis=0) + cm.sum(axis=1))
    report: dict[str, Any] = {
        "n": int(t.size),
        "accuracy": accuracy(t, p),
        "labels": labels.tolist(),
        "per_label": {
            str(lab): {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(cm[i].sum()),
            }
            for i, lab in enumerate(labels.tolist())
        },
        "micro": dict(
            zip(("precision", "recall", "f1"), precision_recall_f1(t, p, "micro"), strict=True)
        ),
        "macro": dict(
            zip(("precision", "recall", "f1"), precision_recall_f1(t, p, "macro"), strict=True)
        ),
        "confusion_matrix": cm.tolist(),
    }
    if set(labels.tolist()) <= {0, 1}:
        report["binary"] = dict(
            zip(("precision", "recall", "f1"), precision_recall_f1(t, p, "binary"), strict=True)
        )
        if y_score is not None:
            report["roc_auc"] = roc_auc(t, y_score)
    return report


def bootstrap_ci(
    values: ArrayLike,
    stat: Callable[[np.ndarray], float] = np.mean,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over `values` (resampled with replacement).

    E.g. per-item 0/1 correctness -> a 95% interval for accuracy. Rows of a 2-D array are
    resampled together, so `stat` may use several columns (e.g. a paired difference).
    """
    v = np.asarray(values)
    if len(v) == 0:
        raise ValueError("bootstrap_ci of an empty array")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n, len(v)))
    stats = np.array([stat(v[i]) for i in idx], dtype=np.float64)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def grouped_bootstrap_ci(
    values: ArrayLike, groups: ArrayLike, n: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% bootstrap interval of the mean of `values`, resampling whole groups, not single values.

    Values that share a group are not independent draws (the K(K-1)/2 pairs of one ranking share
    its answers), so resampling groups keeps the interval honest; with every value its own group
    it is the plain bootstrap of the mean. Vectorised: per-group sums, then one matrix of draws.
    """
    keys, pos = np.unique(np.asarray(groups), return_inverse=True)
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0 or len(v) != len(pos):
        raise ValueError(f"grouped_bootstrap_ci needs one group per value, got {len(v)} and {len(pos)}")
    sums, counts = np.bincount(pos, v, len(keys)), np.bincount(pos, None, len(keys))
    pick = np.random.default_rng(seed).integers(0, len(keys), size=(n, len(keys)))
    means = sums[pick].sum(1) / counts[pick].sum(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if each changed item
    were a fair coin. On paired 0/1 scores (wins = items fixed, losses = items broken, unchanged
    items left out) it is McNemar's exact test.

    >>> round(sign_test(9, 1), 4), sign_test(3, 3), sign_test(0, 0)
    (0.0215, 1.0, 1.0)
    """
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_gain(before: ArrayLike, after: ArrayLike, n: int = 2000, seed: int = 0) -> dict[str, Any]:
    """After minus before, scored on the same items (the same held-out prompts).

    Pairing removes the items' own difficulty from the comparison, so a gain of a few items out of
    hundreds can be told from noise. Returns the mean gain and its 95% bootstrap interval
    (items resampled, each keeping its pair); for 0/1 scores also the items fixed and broken and
    the sign test's p-value on them.

    >>> g = paired_gain([0, 0, 1, 1, 0], [1, 0, 1, 0, 1])
    >>> g["gain"], g["fixed"], g["broken"]
    (0.2, 2, 1)
    """
    b, a = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if b.ndim != 1 or b.shape != a.shape or len(b) == 0:
        raise ValueError(f"paired_gain needs two equal, non-empty 1-D arrays, got {b.shape} and {a.shape}")
    diff = a - b
    lo, hi = bootstrap_ci(diff, n=n, seed=seed)
    out: dict[str, Any] = {"n": len(diff), "gain": float(diff.mean()), "ci95": [lo, hi]}
    if np.isin(np.concatenate([a, b]), (0.0, 1.0)).all():
        fixed, broken = int(((b == 0) & (a == 1)).sum()), int(((b == 1) & (a == 0)).sum())
        out.update(fixed=fixed, broken=broken, sign_test_p=sign_test(fixed, broken))
    return out


# ---------------------------------------------------------------------------- raters and regression


def cohen_kappa(
    y1: ArrayLike, y2: ArrayLike, labels: ArrayLike | None = None, weights: str | None = None
) -> float:
    """Agreement of two raters beyond chance: (p_observed - p_chance) / (1 - p_chance).

    Accuracy alone flatters raters who both say "A" most of the time; kappa subtracts the
    agreement their label frequencies give by chance (MT-Bench reports judge-human agreement
    this way). For ordinal labels (1-10 ratings), `weights` "linear" or "quadratic" charges a
    disagreement by its distance: |i - j| or (i - j)^2 between label *indices* in `labels`
    (sorted observed labels by default, scikit-learn's convention; pass the whole scale, e.g.
    range(1, 11), to count distance on it). NaN when chance agreement is already perfect.

    >>> round(cohen_kappa([0, 1, 1, 0, 1], [0, 1, 0, 0, 1]), 4)  # p_o = 0.8, p_e = 0.48
    0.6154
    >>> cohen_kappa([1, 2, 3, 4], [1, 2, 4, 3], weights="quadratic")  # 1 - 2/10
    0.8
    """
    a, b = _pair(y1, y2)
    cm = confusion_matrix(a, b, labels).astype(np.float64)
    k = cm.shape[0]
    if weights is None:
        w = 1.0 - np.eye(k)
    elif weights in ("linear", "quadratic"):
        d = np.abs(np.arange(k)[:, None] - np.arange(k)[None, :]).astype(np.float64)
        w = d if weights == "linear" else d**2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    # chance: the outer product of the two raters' label frequencies, scaled to the same total
    expected = np.outer(cm.sum(1), cm.sum(0)) / max(cm.sum(), 1.0)
    den = float((w * expected).sum())
    if den == 0:
        return float("nan")
    return 1.0 - float((w * cm).sum()) / den


def mean_absolute_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean |y_true - y_pred|, in the labels' own units: mean_absolute_error([3, 5], [4, 3]) == 1.5."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t.astype(np.float64) - p.astype(np.float64))))


def root_mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """sqrt(mean (y_true - y_pred)^2): like MAE in units, but a few large misses weigh more.

    >>> root_mean_squared_error([3, 5], [4, 3]), mean_absolute_error([0, 0, 0, 0], [0, 0, 0, 4])
    (1.5811388300841898, 1.0)
    """
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t.astype(np.float64) - p.astype(np.float64)) ** 2)))

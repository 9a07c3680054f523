"""How well a reward model orders held-out rankings: pairwise accuracy, ROC AUC, the random and
longer-answer baselines, and a bootstrap interval of the margin over the better baseline."""

from __future__ import annotations

from typing import Any

from gptlab.algos.reward_model import encode, score_all
from gptlab.data.preferences import Ranking
from gptlab.eval.metrics import grouped_bootstrap_ci, roc_auc
from gptlab.model.heads import ScalarHeadModel


def pair_report(rankings: list[Ranking], scores: list[list[float]]) -> dict[str, Any]:
    """Pairwise accuracy, ROC AUC and the baselines, overall and per source (meta["source"], and
    meta["task"] where there is one: "demos:chitchat").

    AUC: each pair is scored twice, (chosen, rejected) labelled 1 and (rejected, chosen) labelled
    0, with the score difference as the classifier's score. Ties count one half in accuracies.
    """
    def summary(idx: list[int]) -> dict[str, Any]:
        diffs, longer, owner = [], [], []
        for i in idx:
            r, s = rankings[i], scores[i]
            for c, j in r.pairs():
                diffs.append(s[c] - s[j])
                lc, lj = len(r.responses[c]), len(r.responses[j])
                longer.append(1.0 if lc > lj else 0.5 if lc == lj else 0.0)
                owner.append(i)
        if not diffs:
            return {"pairs": 0}
        right = [1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs]
        acc, length = sum(right) / len(right), sum(longer) / len(longer)
        auc = roc_auc([1] * len(diffs) + [0] * len(diffs), diffs + [-d for d in diffs])
        best = longer if length > 0.5 else [0.5] * len(right)
        # the K(K-1)/2 pairs of one ranking share answers: resample rankings, not pairs
        lo, hi = grouped_bootstrap_ci([a - b for a, b in zip(right, best)], owner)
        return {"pairs": len(diffs), "rankings": len(idx), "accuracy": acc, "roc_auc": auc,
                "random_baseline": 0.5, "longer_wins_baseline": length,
                "margin_over_best_baseline": acc - max(0.5, length), "margin_ci95": [lo, hi],
                "mean_margin": sum(diffs) / len(diffs)}

    report = summary(list(range(len(rankings))))
    sources: dict[str, list[int]] = {}
    for i, r in enumerate(rankings):
        name = str(r.meta.get("source", "unknown")) + (f":{r.meta['task']}" if r.meta.get("task") else "")
        sources.setdefault(name, []).append(i)
    if len(sources) > 1:
        report["by_source"] = {k: summary(v) for k, v in sorted(sources.items())}
    if report.get("pairs"):
        report["beats_baselines"] = report["accuracy"] > max(0.5, report["longer_wins_baseline"])
        report["clearly_beats_baselines"] = report["margin_ci95"][0] > 0
    return report


def evaluate_folder(model: ScalarHeadModel, tok, rankings: list[Ranking]) -> dict[str, Any]:
    """The pair report of `rankings` scored by `model`, each read through the window it learned."""
    encoded = [encode(tok, r, model.max_tokens) for r in rankings]
    return pair_report(rankings, score_all(model, encoded, tok.pad_id))

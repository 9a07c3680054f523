"""How far two rankings files agree on what both ranked: a judge model against people (RLAIF's and
MT-Bench's question: can the judge stand in for the labelers?), or two people against each other.

Items are matched by content, not by position or file order: a pair is (prompt, response x,
response y), a ranking is (prompt, its set of responses). So a judge that ranked the chats of
`gptlab rank ratings` (`gptlab rank judge --candidates ratings.jsonl`) lines up with the people's
ranking even when it split a tied ranking into pairs.

- **Pairwise agreement**: on every pair both files ordered, the share where they chose the same
  winner; Cohen's kappa on the same choices, so a judge that always picks one position gains
  nothing from the labels' frequencies. A pair is labelled by A's listing order (1: the response
  A lists first wins), which for `rank ratings` is random, so chance agreement is near 0.5.
- **Whole rankings** (same prompt, same responses in both files): Kendall's tau between the two
  orders (1 the same, -1 reversed, 0 unrelated) and top-1 agreement (the same best response).

Pairs from one ranking share their responses, so their intervals resample whole rankings of A
(`grouped_bootstrap_ci`), not single pairs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gptlab.data.preferences import Ranking
from gptlab.eval.metrics import bootstrap_ci, cohen_kappa, grouped_bootstrap_ci


def prompt_key(r: Ranking) -> str:
    """The prompt as one string, so rankings from two files match when their prompts are equal."""
    return json.dumps(r.prompt, sort_keys=True, ensure_ascii=False)


def winners(rankings: Sequence[Ranking]) -> dict[tuple[str, str, str], str]:
    """{(prompt, x, y): the winner's text} for every ordered pair, under both orientations.

    >>> r = Ranking([{"role": "user", "content": "?"}], ["a", "b"], [1, 0])
    >>> sorted(w for w in winners([r]).values())
    ['b', 'b']
    """
    out: dict[tuple[str, str, str], str] = {}
    for r in rankings:
        p = prompt_key(r)
        for w, lose in r.pairs():
            x, y = r.responses[w], r.responses[lose]
            if x != y:  # the first file to order a pair decides it; later repeats are ignored
                out.setdefault((p, x, y), x)
                out.setdefault((p, y, x), x)
    return out


@dataclass
class PairVotes:
    """The pairs both files ordered, each labelled 1 when the response A lists first wins."""

    group: list[int] = field(default_factory=list)  # index of the ranking in A the pair came from
    a: list[int] = field(default_factory=list)
    b: list[int] = field(default_factory=list)


def shared_pairs(a: Sequence[Ranking], b: Sequence[Ranking]) -> PairVotes:
    """Every pair of A's rankings that B also ordered, with both files' choices."""
    b_wins = winners(b)
    votes, seen = PairVotes(), set()
    for g, r in enumerate(a):
        p, rank = prompt_key(r), {i: pos for pos, i in enumerate(r.order)}
        for i in range(len(r.responses)):
            for j in range(i + 1, len(r.responses)):
                x, y = r.responses[i], r.responses[j]
                if x == y or (p, x, y) in seen or (p, x, y) not in b_wins:
                    continue
                seen.update({(p, x, y), (p, y, x)})
                votes.group.append(g)
                votes.a.append(int(rank[i] < rank[j]))
                votes.b.append(int(b_wins[(p, x, y)] == x))
    return votes


def kendall_tau(order_a: Sequence[str], order_b: Sequence[str]) -> float:
    """Kendall's tau of two orders of the same items (no ties): (concordant - discordant) / pairs.

    >>> kendall_tau("abc", "abc"), kendall_tau("abc", "cba"), kendall_tau("abcd", "abdc")
    (1.0, -1.0, 0.6666666666666666)
    """
    pos = {x: k for k, x in enumerate(order_b)}
    n = len(order_a)
    if n < 2 or sorted(pos) != sorted(order_a):
        raise ValueError("kendall_tau needs two orders of the same >= 2 items")
    s = sum(1 if pos[order_a[i]] < pos[order_a[j]] else -1 for i in range(n) for j in range(i + 1, n))
    return s / (n * (n - 1) / 2)


def shared_rankings(a: Sequence[Ranking], b: Sequence[Ranking]) -> list[tuple[list[str], list[str]]]:
    """(A's order, B's order) as response texts, for each prompt and response set both ranked whole."""
    def key(r: Ranking) -> tuple[str, frozenset[str]]:
        return prompt_key(r), frozenset(r.responses)

    b_by = {}
    for r in b:
        if len(set(r.responses)) == len(r.responses):
            b_by.setdefault(key(r), [r.responses[i] for i in r.order])
    out = []
    for r in a:
        if len(set(r.responses)) == len(r.responses) and key(r) in b_by:
            out.append(([r.responses[i] for i in r.order], b_by.pop(key(r))))
    return out


def _kappa_ci(votes: PairVotes, n: int, seed: int) -> list[float] | None:
    """95% interval of binary kappa, resampling A's rankings: kappa needs only the four cell
    counts, so each draw sums per-ranking counts (one matrix product, no loop over draws)."""
    keys, pos = np.unique(np.asarray(votes.group), return_inverse=True)
    cells = np.zeros((len(keys), 4))
    np.add.at(cells, (pos, 2 * np.asarray(votes.a) + np.asarray(votes.b)), 1)
    pick = np.random.default_rng(seed).integers(0, len(keys), size=(n, len(keys)))
    c = cells[pick].sum(1)  # (n, 4): a0b0, a0b1, a1b0, a1b1
    total = c.sum(1)
    po = (c[:, 0] + c[:, 3]) / total
    a1, b1 = (c[:, 2] + c[:, 3]) / total, (c[:, 1] + c[:, 3]) / total
    pe = a1 * b1 + (1 - a1) * (1 - b1)
    ok = pe < 1
    if not ok.any():
        return None
    k = (po[ok] - pe[ok]) / (1 - pe[ok])
    return [float(np.quantile(k, 0.025)), float(np.quantile(k, 0.975))]


def _finite(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def agreement(a: Sequence[Ranking], b: Sequence[Ranking], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Pairwise agreement, kappa, Kendall's tau and top-1 agreement of B with A, with 95% intervals
    (see the module docstring); plain Python, ready for JSON. Figures over no shared item are None."""
    votes = shared_pairs(a, b)
    pairs: dict[str, Any] = {"n": len(votes.a), "rankings": len(set(votes.group))}
    if votes.a:
        same = (np.asarray(votes.a) == np.asarray(votes.b)).astype(float)
        pairs.update(
            agreement=float(same.mean()),
            agreement_ci95=list(grouped_bootstrap_ci(same, votes.group, n_boot, seed)),
            kappa=_finite(cohen_kappa(votes.a, votes.b, labels=[0, 1])),
            kappa_ci95=_kappa_ci(votes, n_boot, seed),
            a_first_wins=float(np.mean(votes.a)),  # how often each file picks A's first-listed response
            b_first_wins=float(np.mean(votes.b)),
        )
    whole = shared_rankings(a, b)
    rankings: dict[str, Any] = {"n": len(whole)}
    if whole:
        taus = np.array([kendall_tau(x, y) for x, y in whole])
        top1 = np.array([float(x[0] == y[0]) for x, y in whole])
        rankings.update(
            kendall_tau=float(taus.mean()),
            kendall_tau_ci95=list(bootstrap_ci(taus, n=n_boot, seed=seed)),
            top1=float(top1.mean()),
            top1_ci95=list(bootstrap_ci(top1, n=n_boot, seed=seed)),
            top1_chance=float(np.mean([1 / len(x) for x, _ in whole])),
            k=sorted({len(x) for x, _ in whole}),
        )
    return {"pairs": pairs, "rankings": rankings}

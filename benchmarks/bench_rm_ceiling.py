"""How much of a preference file can be learned beyond length? A bag-of-words ceiling check.

Before blaming the reward model for sitting at the longer-wins baseline, ask whether the data
holds anything else a simple learner can find. This fits a logistic regression on the difference
of two replies' TF-IDF vectors (word 1-2-grams, or character 2-4-grams) plus their length
difference, on the same held-out split `gptlab reward train --split-by ranking` makes, and prints
held-out pairwise accuracy per source next to the longer-wins baseline.

    python benchmarks/bench_rm_ceiling.py runs/tiny/rankings/ratings.jsonl runs/tiny/rankings/demos.jsonl
    # -> benchmarks/results/rm_ceiling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pairs_of(rankings: list) -> list[tuple[str, str, str]]:
    """(chosen, rejected, source[:task]) for every pair of every ranking."""
    out = []
    for r in rankings:
        src = str(r.meta.get("source", "unknown")) + (f":{r.meta['task']}" if r.meta.get("task") else "")
        out += [(r.responses[c], r.responses[j], src) for c, j in r.pairs()]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="rankings files (gptlab rank ...)")
    p.add_argument("--val-frac", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=1337, help="the split seed (reward train's default)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rm_ceiling.json")
    args = p.parse_args()

    import numpy as np
    from scipy.sparse import hstack, vstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from gptlab.algos.reward_model import split_heldout
    from gptlab.data.preferences import load_rankings

    rankings = [r for f in args.files for r in load_rankings(f)]
    train_r, held_r = split_heldout(rankings, args.val_frac, args.seed, "ranking")
    train, held = pairs_of(train_r), pairs_of(held_r)
    by_src: dict[str, list[int]] = defaultdict(list)
    for i, (_, _, src) in enumerate(held):
        by_src[src].append(i)
    longer = np.array([1.0 if len(a) > len(b) else 0.5 if len(a) == len(b) else 0.0 for a, b, _ in held])

    results = {"longer_wins": {s: float(longer[ix].mean()) for s, ix in by_src.items()},
               "pairs": {s: len(ix) for s, ix in by_src.items()}, "models": []}
    for name, kw in (("word 1-2-grams", {"analyzer": "word", "ngram_range": (1, 2), "min_df": 2}),
                     ("char 2-4-grams", {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 3})):
        vec = TfidfVectorizer(sublinear_tf=True, **kw).fit([t for a, b, _ in train for t in (a, b)])

        def features(ps: list[tuple[str, str, str]], vec=vec):
            diff = vec.transform([a for a, _, _ in ps]) - vec.transform([b for _, b, _ in ps])
            length = np.array([[len(a) - len(b)] for a, b, _ in ps]) / 300.0
            return hstack([diff, length]).tocsr()

        x = features(train)
        fit = LogisticRegression(C=1.0, max_iter=2000).fit(vstack([x, -x]), np.r_[np.ones(len(train)), np.zeros(len(train))])
        right = fit.decision_function(features(held)) > 0
        acc = {s: float(right[ix].mean()) for s, ix in by_src.items()}
        results["models"].append({"features": name + " + length difference", "accuracy": acc})
        print(f"{name:>15}: " + " | ".join(f"{s} {acc[s]:.3f} (longer-wins {results['longer_wins'][s]:.3f}, "
                                           f"{results['pairs'][s]} pairs)" for s in sorted(acc)))
    results.update(files=[str(f) for f in args.files], train_pairs=len(train), time=time.strftime("%Y-%m-%d %H:%M:%S"),
                   machine=f"{platform.machine()}, {os.cpu_count()} CPUs", load_avg=list(os.getloadavg()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

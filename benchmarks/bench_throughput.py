"""Training throughput: gptlab's one loop against a bare PyTorch loop on the same model.

CPU default: nanoGPT's CPU Shakespeare shape (4 layers, 4 heads, 128 wide, block 64, batch 12,
vocab 65); our Llama-style block has a SwiGLU MLP of 352 (~8/3 x 128), so both loops train the
very same `gptlab.model.gpt.GPT`. Variants, each run in its own fresh subprocess (so peak RSS is
per variant) and interleaved across `--repeats` (so they share the machine's load):

- ours:        `gptlab.train.loop.Trainer` on `PackedLoader` batches (log every 10 steps, as
               nanoGPT's shakespeare-char config), fused AdamW param groups, grad clip 1.0;
- ours_log1:   the same with a progress line and metrics record every step;
- bare_fused:  a hand-written fwd + bwd + clip + AdamW(fused) loop with nanoGPT's get_batch
               (random windows of a memmap), loss.item() every 10 steps: the overhead baseline;
- bare_default: the same with torch's default AdamW (foreach), what a plain script would use.

tokens/s = steps * B * T / wall seconds of the training steps (model build and data setup not
timed), median over repeats; ratio = ours / bare_fused (>= 1: no hidden overhead).

On CUDA (`--device cuda --preset d12 --dtype bf16`), also MFU = GPT.flops_per_token() * tok/s /
peak (H100 bf16 dense: 989 TFLOP/s; override with --peak-tflops) and peak GPU memory.

    python benchmarks/bench_throughput.py                          # CPU, nanoGPT shape
    python benchmarks/bench_throughput.py --device cuda --preset d12 --dtype bf16 --batch-size 16 --seq-len 1024
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "throughput.json"
VARIANTS = ("ours", "ours_log1", "bare_fused", "bare_default")


def build_model(args):
    import torch

    from gptlab.model.config import ModelConfig, preset
    from gptlab.model.gpt import GPT

    torch.manual_seed(0)
    if args.preset:
        cfg = preset(args.preset, args.vocab_size, args.seq_len)
    else:  # nanoGPT's CPU Shakespeare model
        cfg = ModelConfig(
            vocab_size=args.vocab_size,
            n_layer=4,
            n_embd=128,
            n_head=4,
            n_kv_head=4,
            intermediate_size=352,
            max_seq_len=args.seq_len,
        )
    return GPT(cfg)


def write_data(folder: Path, vocab_size: int, n_tokens: int) -> None:
    import numpy as np

    from gptlab.data.shards import write_token_shards

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab_size, n_tokens)
    tokens[::500] = vocab_size - 1  # document delimiters, as in real shards
    write_token_shards(folder, {"train": [tokens]}, vocab_size, vocab_size - 1)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(args, data: Path, log_every: int) -> float:
    import io
    from contextlib import redirect_stdout

    from gptlab.data.loader import PackedLoader
    from gptlab.train.distributed import DistInfo
    from gptlab.train.loop import TrainConfig, Trainer

    def lm_loss(model, batch):
        x, y = batch
        return model(x, y), {"tokens": y.numel()}

    cfg = TrainConfig(
        max_steps=args.steps,
        lr=1e-3,
        warmup_steps=0,
        log_every=log_every,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
    )
    loader = PackedLoader(data, "train", args.batch_size, args.seq_len, device=args.device)
    trainer = Trainer(build_model(args), loader, lm_loss, cfg, dist=DistInfo(device=args.device))
    sink = io.StringIO()  # the progress lines are produced (that is the cost measured), not shown
    sync(args.device)
    t0 = time.perf_counter()
    with redirect_stdout(sink):
        trainer.fit()
    sync(args.device)
    return time.perf_counter() - t0


def run_bare(args, data: Path, fused: bool) -> float:
    import contextlib

    import numpy as np
    import torch

    model = build_model(args).to(args.device)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=1e-3,
        betas=(0.9, 0.95),
        weight_decay=0.1,
        **({"fused": True} if fused else {}),
    )
    tokens = np.memmap(
        data / "train_0000.bin",
        dtype=np.uint16 if args.vocab_size <= 65536 else np.uint32,
        mode="r",
    )
    B, T = args.batch_size, args.seq_len
    ctx = (
        torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16)
        if args.dtype == "bf16"
        else contextlib.nullcontext()
    )
    fwd = torch.compile(model) if args.compile else model

    def get_batch():  # nanoGPT's train.py get_batch
        ix = torch.randint(len(tokens) - T, (B,))
        x = torch.stack([torch.from_numpy(tokens[i : i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(tokens[i + 1 : i + 1 + T].astype(np.int64)) for i in ix])
        if args.device.startswith("cuda"):
            return x.pin_memory().to(args.device, non_blocking=True), y.pin_memory().to(
                args.device, non_blocking=True
            )
        return x, y

    sync(args.device)
    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y = get_batch()
        with ctx:
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0:
            loss.item()
    sync(args.device)
    return time.perf_counter() - t0


def child(args) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    if args.variant in ("ours", "ours_log1"):
        seconds = run_ours(args, data, log_every=10 if args.variant == "ours" else 1)
    else:
        seconds = run_bare(args, data, fused=args.variant == "bare_fused")
    out = {
        "variant": args.variant,
        "seconds": seconds,
        "tok_per_s": args.steps * args.batch_size * args.seq_len / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    if args.device.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype",
        default="auto",
        help="autocast dtype for our loop; bf16 also turns it on in the bare loop",
    )
    p.add_argument("--preset", help="a gptlab preset (d12 ...) instead of nanoGPT's CPU model")
    p.add_argument("--vocab-size", type=int, help="default 65 (CPU shape) or 32768 (with --preset)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--steps", type=int, default=100, help="timed training steps per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile in both loops")
    p.add_argument(
        "--threads",
        type=int,
        help="torch.set_num_threads in every measurement (default: torch's choice)",
    )
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument(
        "--peak-tflops", type=float, default=989.0, help="accelerator dense bf16 peak, for MFU"
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.vocab_size is None:
        args.vocab_size = 32768 if args.preset else 65
    if args.variant:
        child(args)
        return

    variants = args.variants.split(",")
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        write_data(
            Path(tmp),
            args.vocab_size,
            max(1_000_000, 4 * args.steps * args.batch_size * (args.seq_len + 1)),
        )
        passthrough = [
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--vocab-size",
            str(args.vocab_size),
            "--seq-len",
            str(args.seq_len),
            "--batch-size",
            str(args.batch_size),
            "--steps",
            str(args.steps),
        ]
        passthrough += (["--preset", args.preset] if args.preset else []) + (
            ["--compile"] if args.compile else []
        )
        passthrough += ["--threads", str(args.threads)] if args.threads else []
        for r in range(args.repeats):
            for v in variants:  # interleaved: every variant sees the same load drift
                cmd = [sys.executable, __file__, *passthrough, "--variant", v, "--data", tmp]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rec = json.loads(done.stdout.strip().splitlines()[-1])
                runs[v].append(rec)
                print(
                    f"repeat {r + 1}/{args.repeats} {v:<13} {rec['tok_per_s']:>10,.0f} tok/s  "
                    f"rss {rec['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    load_after = [round(x, 2) for x in os.getloadavg()]

    model = build_model(args)
    summary = {}
    for v, recs in runs.items():
        tps = statistics.median(r["tok_per_s"] for r in recs)
        summary[v] = {
            "tok_per_s_median": round(tps),
            "tok_per_s_all": [round(r["tok_per_s"]) for r in recs],
            "peak_rss_mb_median": round(statistics.median(r["peak_rss_mb"] for r in recs), 1),
        }
        if args.device.startswith("cuda"):
            summary[v]["mfu"] = round(model.flops_per_token() * tps / (args.peak_tflops * 1e12), 4)
            summary[v]["peak_gpu_mb"] = round(max(r["peak_gpu_mb"] for r in recs))
    ratios = {}
    if "bare_fused" in summary:
        for v in ("ours", "ours_log1", "bare_default"):
            if v in summary:
                ratios[f"{v}/bare_fused"] = round(
                    summary[v]["tok_per_s_median"] / summary["bare_fused"]["tok_per_s_median"], 3
                )
    if "ours" in summary and "bare_default" in summary:
        ratios["ours/bare_default"] = round(
            summary["ours"]["tok_per_s_median"] / summary["bare_default"]["tok_per_s_median"], 3
        )

    import torch

    c = model.config
    result = {
        "command": "python benchmarks/bench_throughput.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "device": args.device,
            "torch_threads": runs[variants[0]][0]["threads"],
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "model": {
            "n_layer": c.n_layer,
            "n_embd": c.n_embd,
            "n_head": c.n_head,
            "intermediate_size": c.intermediate_size,
            "vocab_size": c.vocab_size,
            "params": model.num_params(),
            "flops_per_token": model.flops_per_token(),
        },
        "batch": {
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "steps": args.steps,
            "repeats": args.repeats,
            "dtype": args.dtype,
            "compile": args.compile,
        },
        "results": summary,
        "ratios": ratios,
    }
    print(json.dumps({"results": summary, "ratios": ratios}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = {}
    if args.out.exists():
        try:
            existing = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            existing = {}
    key = f"{args.device.split(':')[0]}:{args.preset or 'nanogpt-cpu'}" + (
        f":threads{args.threads}" if args.threads else ""
    )
    existing[key] = result  # CPU and GPU results live side by side in one file
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {args.out} [{key}]")


if __name__ == "__main__":
    main()

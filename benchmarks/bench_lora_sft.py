"""LoRA SFT speed and memory: gptlab's own LoRA and loss against transformers + peft, same batches.

Both sides train the same imported model (default runs/smollm2/base; the Hugging Face side loads
it through `gptlab.model.hf.export_hf` + `LlamaForCausalLM.from_pretrained`, fp32, sdpa) with
the same adapters and the same optimizer on the same batches:

- adapters: rank `--rank`, alpha `--alpha` on q,k,v,o,gate,up,down of every block (gptlab:
  `gptlab.model.lora.apply_lora`; peft: `LoraConfig` + `get_peft_model`). The A matrices are drawn
  once (seeded, by gptlab) and copied into peft, B is zero on both, so step 0 is the same function
  and the loss curves should agree to float noise;
- batches: conversations of gptlab's embedded SFT mixture (no arithmetic: its tool-call turns need
  tool tokens) rendered with the model's own chat template (`tok.render_conversation`), packed
  by `gptlab.data.sft_batches.SFTBatches` into `--batch-size` x `--seq-len` rows, loss on the
  assistant's tokens only, fixed seed, saved once and read by both sides;
- loss: gptlab's `masked_lm_loss` (the model's own cross-entropy on target positions only, as `gptlab sft`); on the HF side the
  same cross-entropy on `model(input_ids).logits` with the same targets (-1 ignored);
- step: forward, backward, clip the gradient norm to 1.0, fused AdamW (lr `--lr`, betas 0.9/0.95,
  no weight decay, constant LR), zero_grad: the step of gptlab's training loop.

Each side runs in its own subprocess (so peak memory is its own), on `torch.set_num_threads`;
both stay alive and the parent alternates their steps (gptlab, hf, then hf, gptlab, ...), one
side computing at a time, so a shared machine's load falls on both alike.
Reported per side: tokens/s = B*T / median step time after `--warmup` steps; the loss of every
step; RSS after loading, and the peak RSS during training (Linux VmHWM, reset after loading via
/proc/self/clear_refs) and over the whole process (getrusage maxrss).

    python benchmarks/bench_lora_sft.py            # writes benchmarks/results/lora_sft_smollm2.json
    python benchmarks/bench_lora_sft.py --steps 8 --batch-size 4 --out /tmp/lora.json
"""

from __future__ import annotations

import argparse
import datetime
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lora_sft_smollm2.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SIDES = ("gptlab", "hf")


# ----- shared helpers -----
def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def rss_mb(field: str) -> float:
    """A field of /proc/self/status in MiB: 'VmRSS' (now) or 'VmHWM' (peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ----- parent: data, initial adapter, HF folder -----
def make_batches(tok_dir: Path, steps: int, batch: int, seq_len: int, seed: int):
    import torch

    from gptlab.data.sft_batches import SFTBatches
    from gptlab.tasks.mixture import DEFAULT_SIZES, sft_mixture
    from gptlab.tokenizer.loading import load_tokenizer

    tok = load_tokenizer(tok_dir)
    sizes = {name: 0 if name == "arithmetic" else 150 for name in DEFAULT_SIZES}
    examples = []
    for conv in sft_mixture("train", sizes, seed):
        ids, mask = tok.render_conversation(conv)
        ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
        if any(mask[1:]):
            examples.append((ids, mask))
    rows = SFTBatches(examples, batch, seq_len, tok.eot_id, seed=seed)
    pairs = [next(rows) for _ in range(steps)]
    xs = torch.stack([p[0] for p in pairs])
    ys = torch.stack([p[1] for p in pairs])
    return xs, ys, len(examples)


def prepare(args, tmp: Path) -> dict:
    import torch

    from gptlab.model.hf import export_hf
    from gptlab.model.io import load_model
    from gptlab.model.lora import apply_lora, lora_state_dict

    src = Path(args.from_)
    tok_dir = Path(args.tokenizer or src.parent / "tokenizer")
    xs, ys, n_conv = make_batches(tok_dir, args.steps, args.batch_size, args.seq_len, args.seed)
    torch.save({"x": xs, "y": ys}, tmp / "batches.pt")
    model = load_model(src)
    torch.manual_seed(args.seed)
    apply_lora(model, TARGETS, args.rank, args.alpha)
    torch.save(lora_state_dict(model), tmp / "adapter_init.pt")
    config = model.config.to_dict()
    del model
    export_hf(src, tmp / "hf", include_tokenizer=False)
    return {
        "conversations": n_conv,
        "target_tokens_per_step": [int((y >= 0).sum()) for y in ys],
        "config": config,
    }


# ----- workers: one side each, in its own process -----
def build_gptlab(args, init: dict):
    from gptlab.model.io import load_model
    from gptlab.model.lora import apply_lora, load_lora_state_dict
    from gptlab.train.loop import masked_lm_loss
    from gptlab.train.optim import build_optimizer

    model = load_model(args.from_)
    apply_lora(model, TARGETS, args.rank, args.alpha)
    load_lora_state_dict(model, init)
    model.train()
    opt = build_optimizer(model, "adamw", lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))

    def loss_fn(x, y):
        return masked_lm_loss(model, (x, y))[0]

    return model, opt, loss_fn


def build_hf(args, init: dict, hf_dir: Path):
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(
        base,
        LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=TARGETS, lora_dropout=0.0, bias="none"),
    )
    # Same A (and zero B) as gptlab's: 'layers.0.self_attn.q_proj.lora_A' ->
    # 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight'; shapes agree
    # (A: (r, in), B: (out, r)).
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in init.items():
            module, _, which = name.rpartition(".")
            params[f"base_model.model.model.{module}.{which}.default.weight"].copy_(value)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, fused=True)

    def loss_fn(x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1)

    return model, opt, loss_fn


def worker(args) -> int:
    """One side, driven step by step by the parent: reads 'step I' / 'finish' lines on stdin,
    answers 'done LOSS SECONDS' on stdout (its own log goes to stderr)."""
    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(args.tmp)
    init = torch.load(tmp / "adapter_init.pt")
    data = torch.load(tmp / "batches.pt")
    t_load = time.perf_counter()
    if args.worker == "gptlab":
        model, opt, loss_fn = build_gptlab(args, init)
    else:
        model, opt, loss_fn = build_hf(args, init, tmp / "hf")
    load_s = time.perf_counter() - t_load
    params = [p for p in model.parameters() if p.requires_grad]
    rss_loaded = rss_mb("VmRSS")
    reset_ok = reset_peak_rss()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "finish":
            break
        x, y = data["x"][int(cmd[1])], data["y"][int(cmd[1])]
        t0 = time.perf_counter()
        loss = loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = loss.item()
        print(f"done {value!r} {time.perf_counter() - t0!r}", flush=True)
    out = {
        "load_s": load_s,
        "trainable_params": sum(p.numel() for p in params),
        "rss_after_load_mb": rss_loaded,
        "peak_rss_train_mb": rss_mb("VmHWM") if reset_ok else None,
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    (tmp / f"{args.worker}.json").write_text(json.dumps(out))
    return 0


def _reply(proc: subprocess.Popen, side: str, word: str) -> str:
    """The worker's next line starting with `word` (anything else it prints is passed on)."""
    for line in proc.stdout:
        if line.startswith(word):
            return line
        print(f"  [{side}] {line.rstrip()}", file=sys.stderr)
    raise RuntimeError(f"{side} worker exited with {proc.wait()} before answering {word!r}")


def run_interleaved(args, tmp: Path) -> dict[str, dict]:
    """Start both sides (each loads its model), then alternate their steps one at a time, so
    the machine's load (shared here) falls on both alike; only one side computes at any moment."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    order = args.order.split(",")
    procs = {}
    for side in order:  # loaded one after the other: a loading side would slow the other's steps
        procs[side] = subprocess.Popen(
            [sys.executable, __file__, "--worker", side, "--tmp", str(tmp)] + args.passthrough,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        _reply(procs[side], side, "ready")
    res = {side: {"losses": [], "step_s": [], "load_average": []} for side in order}
    for step in range(args.steps):
        for side in order if step % 2 == 0 else order[::-1]:
            procs[side].stdin.write(f"step {step}\n")
            procs[side].stdin.flush()
            _, loss, secs = _reply(procs[side], side, "done").split()
            res[side]["losses"].append(float(loss))
            res[side]["step_s"].append(float(secs))
            res[side]["load_average"].append(round(os.getloadavg()[0], 2))
        print(
            f"step {step:02d} | " + " | ".join(
                f"{s} loss {res[s]['losses'][-1]:.5f} {res[s]['step_s'][-1]:6.2f}s" for s in order
            ) + f" | load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    for side, proc in procs.items():
        proc.stdin.write("finish\n")
        proc.stdin.flush()
        if proc.wait() != 0:
            raise RuntimeError(f"{side} worker exited with {proc.returncode}")
        res[side].update(json.loads((tmp / f"{side}.json").read_text()))
    return res


def summarize(res: dict, tokens: int, warmup: int) -> dict:
    timed = res["step_s"][warmup:] or res["step_s"]
    med = statistics.median(timed)
    return {
        "tokens_per_s": round(tokens / med, 1),
        "median_step_s": round(med, 3),
        "min_step_s": round(min(timed), 3),
        "load_s": round(res["load_s"], 2),
        "trainable_params": res["trainable_params"],
        "rss_after_load_mb": round(res["rss_after_load_mb"], 1),
        "peak_rss_train_mb": None if res["peak_rss_train_mb"] is None else round(res["peak_rss_train_mb"], 1),
        "peak_rss_process_mb": round(res["peak_rss_process_mb"], 1),
        "losses": [round(v, 6) for v in res["losses"]],
        "step_s": [round(v, 3) for v in res["step_s"]],
        "load_average_1min_per_step": res["load_average"],
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="from_", default=str(ROOT / "runs" / "smollm2" / "base"), help="imported model folder (default: runs/smollm2/base)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model folder's sibling 'tokenizer')")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per side (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the median (default: 3)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per step (default: 8)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per row (default: 256)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (default: 8)")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default: 16)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate, constant (default: 2e-3, gptlab sft's LoRA default)")
    p.add_argument("--seed", type=int, default=0, help="seeds the data order and the LoRA A init (default: 0)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per side (default: 2)")
    p.add_argument("--order", default="gptlab,hf", help="which side runs first (default: gptlab,hf)")
    p.add_argument("--out", default=str(RESULTS), help=f"results file (default: {RESULTS.relative_to(ROOT)})")
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    # The workers get the same settings (every flag but --out and --order).
    args.passthrough = [
        f"--from={args.from_}", f"--steps={args.steps}", f"--warmup={args.warmup}",
        f"--batch-size={args.batch_size}", f"--seq-len={args.seq_len}", f"--rank={args.rank}",
        f"--alpha={args.alpha}", f"--lr={args.lr}", f"--seed={args.seed}", f"--threads={args.threads}",
    ]

    import peft
    import torch
    import transformers

    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    sides: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        info = prepare(args, tmp)
        tokens = args.batch_size * args.seq_len
        print(f"{args.steps} steps of {args.batch_size}x{args.seq_len} per side, interleaved", flush=True)
        for side, res in run_interleaved(args, tmp).items():
            sides[side] = summarize(res, tokens, args.warmup)
    g, h = sides["gptlab"], sides["hf"]
    diffs = [abs(a - b) for a, b in zip(g["losses"], h["losses"])]
    comparison = {
        "ratio_tokens_per_s": round(g["tokens_per_s"] / h["tokens_per_s"], 3),
        "ratio_peak_rss_train": None
        if not (g["peak_rss_train_mb"] and h["peak_rss_train_mb"])
        else round(g["peak_rss_train_mb"] / h["peak_rss_train_mb"], 3),
        "ratio_peak_rss_process": round(g["peak_rss_process_mb"] / h["peak_rss_process_mb"], 3),
        "step0_loss_abs_diff": diffs[0],
        "max_loss_abs_diff": max(diffs),
        "final_loss": {"gptlab": g["losses"][-1], "hf": h["losses"][-1]},
    }
    out = {
        "benchmark": "lora_sft",
        "command": "python benchmarks/bench_lora_sft.py " + " ".join(argv),
        "date": started.isoformat(timespec="seconds"),
        "model": str(Path(args.from_).resolve().relative_to(ROOT)) if Path(args.from_).resolve().is_relative_to(ROOT) else args.from_,
        "config": info["config"],
        "data": {
            "source": "embedded SFT mixture without arithmetic, model chat template, packed",
            "conversations": info["conversations"],
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "steps": args.steps,
            "warmup_steps_excluded": args.warmup,
            "target_tokens_per_step": info["target_tokens_per_step"],
        },
        "lora": {"rank": args.rank, "alpha": args.alpha, "targets": TARGETS, "dropout": 0.0},
        "optimizer": {"name": "AdamW (fused)", "lr": args.lr, "betas": [0.9, 0.95], "weight_decay": 0.0, "grad_clip": 1.0},
        "threads": args.threads,
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": platform.python_version(),
        },
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "sides": sides,
        "comparison": comparison,
    }
    from gptlab.fileio import atomic_write_json

    atomic_write_json(args.out, out)
    print(
        f"gptlab {g['tokens_per_s']:.0f} tok/s, peak train RSS {g['peak_rss_train_mb']} MB | "
        f"hf+peft {h['tokens_per_s']:.0f} tok/s, peak train RSS {h['peak_rss_train_mb']} MB | "
        f"ratio {comparison['ratio_tokens_per_s']:.2f}x | step-0 loss diff {diffs[0]:.2e}, max {max(diffs):.2e}"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

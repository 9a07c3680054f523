"""Decode speed against the reference engine: gptlab's Engine and llama.cpp on the same weights.

The model folder (e.g. runs/smollm2/base from `gptlab model get smollm2-135m-instruct`) is exported
with `gptlab export --format gguf` (f32 by default, so both engines read the very same fp32 weights)
and loaded by llama.cpp through `llama-cpp-python` (`pip install llama-cpp-python`, which compiles
llama.cpp on the machine: ~10 minutes on 2 cores). Both decode greedily from the same prompt token
ids for exactly `--new-tokens` tokens on `--threads` threads, interleaved over `--repeats` so they
share the machine's load; medians reported:

- tokens/s = new tokens / wall seconds of the whole generation (prefill included);
- prefill ms (the prompt's forward pass) and ms per decode step (the rest, per token);
- same_tokens: how many of the greedy tokens agree, position by position, until the first split.

    python benchmarks/bench_llamacpp.py --from runs/smollm2/base --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_decode import chat_prompts, cpu_model, decode_bytes_per_token, read_bandwidth

RESULTS = ROOT / "benchmarks" / "results" / "decode_llamacpp.json"


def run_ours(engine, prompt: list[int], new_tokens: int) -> tuple[float, float, list[int]]:
    out: list[int] = []
    t0 = time.perf_counter()
    first = None
    for row in engine.generate([prompt], new_tokens, temperature=0.0):
        first = first or time.perf_counter()
        out.append(row[0])
    return time.perf_counter() - t0, (first or t0) - t0, out


def run_llama(llm, prompt: list[int], new_tokens: int) -> tuple[float, float, list[int]]:
    """llama.cpp's own loop: evaluate the prompt, then one greedy token per eval."""
    llm.reset()
    out: list[int] = []
    t0 = time.perf_counter()
    first = None
    for tok in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        first = first or time.perf_counter()
        out.append(tok)
        if len(out) == new_tokens:
            break
    return time.perf_counter() - t0, (first or t0) - t0, out


def agree(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="from_", required=True, help="model folder (a gptlab stage folder with tokenizer/ beside it)")
    p.add_argument("--gguf-type", default="f32", choices=["f32", "bf16", "q8_0"], help="weights llama.cpp reads (default f32: the same as ours)")
    p.add_argument("--prompt-len", type=int, default=64, help="prompt tokens (a chat prompt cut to this length)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens generated")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per engine, interleaved; medians reported")
    p.add_argument("--threads", type=int, default=2, help="threads for both engines")
    p.add_argument("--int8", action="store_true",
                   help="ours decodes from int8 copies (`gptlab chat --int8-decode`): race it against --gguf-type q8_0")
    p.add_argument("--ours-dtype", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="our prompts' precision: bf16 runs them under autocast on precast matrices (`--dtype bf16`); "
                   "auto: bf16 where the CPU multiplies bf16 natively, else fp32")
    p.add_argument("--out", default=str(RESULTS), help="results file (a JSON list, appended)")
    args = p.parse_args(argv)

    import torch
    from llama_cpp import Llama

    from gptlab.common import pick_autocast_dtype
    from gptlab.infer import int8_gemv
    from gptlab.infer.engine import Engine
    from gptlab.model.io import load_model

    if args.ours_dtype == "auto":
        args.ours_dtype = "fp32" if pick_autocast_dtype("cpu", "auto") is None else "bf16"

    torch.set_num_threads(args.threads)
    src = Path(args.from_)
    model = load_model(src).eval().requires_grad_(False)
    prompt = chat_prompts(src.parent / "tokenizer", 1, args.prompt_len, seed=1)[0]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        gguf = Path(tmp) / "model.gguf"
        subprocess.run([sys.executable, "-m", "gptlab", "export", "--from", str(src), "--out", str(gguf),
                        "--format", "gguf", "--gguf-type", args.gguf_type], check=True, capture_output=True)
        llm = Llama(model_path=str(gguf), n_ctx=args.prompt_len + args.new_tokens + 8, n_threads=args.threads,
                    n_threads_batch=args.threads, n_batch=args.prompt_len, verbose=False)
        autocast = torch.bfloat16 if args.ours_dtype == "bf16" else None
        if autocast is not None:  # after the export, which reads the fp32 weights
            from gptlab.infer.loading import precast_for_autocast

            precast_for_autocast(model, autocast)
        engine = Engine(model, eos_ids=set(), max_batch=1, max_len=args.prompt_len + args.new_tokens,
                        autocast_dtype=autocast, int8_decode=args.int8)
        run_ours(engine, prompt, 4)  # warm-up both
        run_llama(llm, prompt, 4)
        rows: dict[str, list[tuple[float, float]]] = {"ours": [], "llama.cpp": []}
        for _ in range(args.repeats):
            wall, ttft, ours_ids = run_ours(engine, prompt, args.new_tokens)
            rows["ours"].append((wall, ttft))
            wall, ttft, ref_ids = run_llama(llm, prompt, args.new_tokens)
            rows["llama.cpp"].append((wall, ttft))
    load1 = os.getloadavg()
    entry: dict = {"same_tokens_prefix": agree(ours_ids, ref_ids), "new_tokens": args.new_tokens}
    for side, vals in rows.items():
        walls, ttfts = [v[0] for v in vals], [v[1] for v in vals]
        entry[side] = {
            "tokens_per_s": round(args.new_tokens / statistics.median(walls), 1),
            "prefill_ms": round(1000 * statistics.median(ttfts), 1),
            "ms_per_step": round(1000 * statistics.median((w - t) / (args.new_tokens - 1) for w, t in zip(walls, ttfts)), 2),
            "wall_s": [round(w, 4) for w in walls],
        }
    entry["ratio_tokens_per_s"] = round(entry["ours"]["tokens_per_s"] / entry["llama.cpp"]["tokens_per_s"], 3)
    entry["ratio_ms_per_step"] = round(entry["llama.cpp"]["ms_per_step"] / entry["ours"]["ms_per_step"], 3)
    bandwidth = read_bandwidth()
    per_token = decode_bytes_per_token(model, 4)
    record = {
        "benchmark": "batch-1 decode: gptlab Engine vs llama.cpp (llama-cpp-python) on the same weights",
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python benchmarks/bench_llamacpp.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "gguf_type": args.gguf_type,
        "ours": {"int8_decode": args.int8, "prompt_dtype": args.ours_dtype,
                 "int8_kernel": ("compiled" if int8_gemv.available() else "torch") if args.int8 else None},
        "threads": args.threads,
        "cpu": cpu_model(),
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in load1],
        "read_bandwidth_gb_s": round(bandwidth, 1),
        "weight_bytes_per_token_fp32": per_token,
        "batch1_limit_tokens_per_s_fp32": round(bandwidth * 1e9 / per_token, 1),
        "result": entry,
    }
    print(f"ours {entry['ours']['tokens_per_s']} tok/s ({entry['ours']['ms_per_step']} ms/step, prefill "
          f"{entry['ours']['prefill_ms']} ms) | llama.cpp {args.gguf_type} {entry['llama.cpp']['tokens_per_s']} tok/s "
          f"({entry['llama.cpp']['ms_per_step']} ms/step, prefill {entry['llama.cpp']['prefill_ms']} ms) | "
          f"ratio {entry['ratio_tokens_per_s']:.2f}x | greedy tokens agree for the first {entry['same_tokens_prefix']}")
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else []
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(old + [record], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

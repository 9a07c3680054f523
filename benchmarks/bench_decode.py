"""Decode speed: gptlab's Engine against transformers' `LlamaForCausalLM.generate()` on the same model.

The model is `runs/tiny/base` when it exists (else the `tiny` preset with random weights: speed
does not depend on the weights), exported with `gptlab.model.hf.export_hf` and loaded back by
transformers, so both sides run the very same weights in fp32. Both decode greedily with a KV
cache, from the same prompts, for exactly `--new-tokens` tokens (no stop ids on our side;
`min_new_tokens` on theirs), on `torch.set_num_threads(--threads)`.

Measured per batch size (1 and 16 by default), interleaved across `--repeats` so both share the
machine's load, medians reported:
- tokens/s = batch * new tokens / wall seconds of the whole call (prefill included);
- time to first token (TTFT) = seconds from the call to the first new token of the batch
  (ours: first row the generator yields; theirs: first `put` of a streamer after the prompt);
- same_tokens: our greedy ids equal theirs (a parity check, so the race is fair).

    python benchmarks/bench_decode.py                      # writes benchmarks/results/decode.json
    python benchmarks/bench_decode.py --batch-sizes 1 --repeats 3 --profile

`--from FOLDER` races an imported model instead (e.g. runs/smollm2/base from `gptlab model get
smollm2-135m-instruct --run smollm2`): the folder is exported as it is, and the prompts are real
chat prompts (user turns of gptlab's SFT mixture rendered with the model's own template, the
user text cut so every prompt has `--prompt-len` tokens, default 64, and ends with the assistant
header), so the greedy tokens are the model's real answers. Its KV cache is sized to the prompt
plus the new tokens (the model's 8192-token max_seq_len would allocate GBs at batch 16).

    python benchmarks/bench_decode.py --from runs/smollm2/base --repeats 5 \\
        --out benchmarks/results/decode_smollm2.json
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "decode.json"
ROOT = Path(__file__).resolve().parent.parent


def build_model(args):
    import torch

    from gptlab.model.config import preset
    from gptlab.model.gpt import GPT
    from gptlab.model.io import load_model

    if args.from_:
        folder = Path(args.from_)
        return load_model(folder), str(folder.resolve().relative_to(ROOT)) if folder.resolve().is_relative_to(ROOT) else str(folder)
    base = ROOT / "runs" / "tiny" / "base"
    if (base / "model.safetensors").exists() and not args.random:
        return load_model(base), str(base.relative_to(ROOT))
    vocab = 4096
    tok_dir = ROOT / "runs" / "tiny" / "tokenizer"
    if (tok_dir / "gptlab_tokenizer.json").exists():
        from gptlab.tokenizer.bpe import Tokenizer

        vocab = Tokenizer.load(tok_dir).vocab_size
    torch.manual_seed(0)
    return GPT(preset("tiny", vocab, 256)), f"preset tiny, random weights, vocab {vocab}"


def export_to_hf(model, folder: Path, src: str | None = None, dtype: str = "fp32"):
    """Our model (or the stage folder `src` it came from) -> a Hugging Face folder ->
    LlamaForCausalLM (fp32 or bf16 weights, eval)."""
    import torch
    from transformers import LlamaForCausalLM

    from gptlab.model.hf import export_hf
    from gptlab.model.io import save_model

    if src is None:
        save_model(folder / "base", model)
        src = folder / "base"
    export_hf(src, folder / "hf", include_tokenizer=False)
    hf = LlamaForCausalLM.from_pretrained(
        folder / "hf", torch_dtype=torch.bfloat16 if dtype == "bf16" else torch.float32, attn_implementation="sdpa"
    )
    return hf.eval()


def prompts_for(batch: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g).tolist()


def chat_prompts(tok_dir: Path, batch: int, length: int, seed: int) -> list[list[int]]:
    """`batch` chat prompts of exactly `length` tokens: user turns of the SFT mixture rendered with
    the model's template, the user text cut (or the turn skipped when too short) to fit."""
    import random

    from gptlab.tasks.mixture import DEFAULT_SIZES, sft_mixture
    from gptlab.tokenizer.loading import load_tokenizer

    tok = load_tokenizer(tok_dir)
    # What the template puts after the user text: the common suffix of two renders.
    a = tok.render_prompt([{"role": "user", "content": "alpha"}])
    b = tok.render_prompt([{"role": "user", "content": "omega beta gamma"}])
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    tail = a[len(a) - n :]
    sizes = {name: 0 if name == "arithmetic" else 50 for name in DEFAULT_SIZES}
    convs = sft_mixture("train", sizes, seed)
    random.Random(seed).shuffle(convs)
    out = []
    for conv in convs:
        user = next((m["content"] for m in conv if m["role"] == "user"), None)
        if user is None:
            continue
        ids = tok.render_prompt([{"role": "user", "content": user}])
        if len(ids) >= length:
            out.append(ids[: length - len(tail)] + tail)
        if len(out) == batch:
            return out
    raise ValueError(f"fewer than {batch} prompts of {length} tokens; lower --prompt-len")


def run_ours(engine, prompts, new_tokens: int) -> tuple[float, float, list[list[int]]]:
    outs: list[list[int]] = [[] for _ in prompts]
    t0 = time.perf_counter()
    ttft = None
    for row in engine.generate(prompts, new_tokens, temperature=0.0):
        if ttft is None:
            ttft = time.perf_counter() - t0
        for j, t in enumerate(row):
            if t is not None:
                outs[j].append(t)
    return time.perf_counter() - t0, ttft or 0.0, outs


class _FirstToken:
    """A transformers streamer that notes when the first generated token arrives."""

    def __init__(self):
        self.calls, self.t_first = 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2 and self.t_first is None:  # call 1 is the prompt itself
            self.t_first = time.perf_counter()

    def end(self) -> None:
        pass


def run_hf(hf, prompts, new_tokens: int) -> tuple[float, float, list[list[int]]]:
    import torch

    idx = torch.tensor(prompts, dtype=torch.long)
    streamer = _FirstToken()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(
            idx,
            attention_mask=torch.ones_like(idx),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            streamer=streamer,
            pad_token_id=0,
            eos_token_id=None,
        )
    wall = time.perf_counter() - t0
    return wall, (streamer.t_first or t0) - t0, out[:, idx.size(1) :].tolist()


def profile_ours(engine, prompts, new_tokens: int, path: Path) -> str:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    run_ours(engine, prompts, new_tokens)
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
    path.write_text(s.getvalue())
    return s.getvalue()


def _median_seconds(fn, repeats: int) -> float:
    fn()  # touch the pages first
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def copy_bandwidth(mib: int = 512, repeats: int = 7) -> float:
    """Measured memory bandwidth in GB/s: `dst.copy_(src)` of `mib` MiB (bytes read + written,
    far bigger than the caches), median of `repeats`, on torch's threads as the decode uses them."""
    import torch

    src, dst = torch.ones(mib * 2**20 // 4), torch.empty(mib * 2**20 // 4)
    return 2 * src.numel() * 4 / _median_seconds(lambda: dst.copy_(src), repeats) / 1e9


def read_bandwidth(mib: int = 512, repeats: int = 7) -> float:
    """Measured read bandwidth in GB/s: `src.sum()` of `mib` MiB, median of `repeats`. Decoding
    only reads weights, so this is its bound; a copy also writes and comes out a little lower."""
    import torch

    src = torch.ones(mib * 2**20 // 4)
    return src.numel() * 4 / _median_seconds(src.sum, repeats) / 1e9


def decode_bytes_per_token(model, element_size: int | None = None) -> int:
    """Bytes of weights one batch-1 decode step must read: every matrix once (the output head
    reads the whole embedding when tied; the embedding lookup itself reads one row), at
    `element_size` bytes per weight (default: as stored; 2 when decoding from bf16 copies)."""
    seen, total = set(), 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        tied_head = model.lm_head.weight is model.embed_tokens.weight
        size = element_size or p.element_size()
        if name == "embed_tokens.weight" and not tied_head:
            total += p.shape[1] * size
        else:
            total += p.numel() * size
    return total


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two replies share."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def cpu_model() -> str:
    """lscpu's model name (platform.processor() is empty on many Linux machines)."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:")), "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--batch-sizes", default="1,16", help="comma-separated batch sizes (default: 1,16)"
    )
    p.add_argument(
        "--from",
        dest="from_",
        default=None,
        help="race this model folder (e.g. runs/smollm2/base) instead of the tiny model, on chat prompts",
    )
    p.add_argument(
        "--prompt-len",
        type=int,
        default=None,
        help="prompt tokens per row (default: 32; 64 with --from)",
    )
    p.add_argument(
        "--new-tokens", type=int, default=128, help="tokens generated per row (default: 128)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="timed repeats per side, medians reported (default: 7)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads for both sides (default: 2)"
    )
    p.add_argument(
        "--dtype", choices=["fp32", "bf16"], default="fp32",
        help="both sides' weights: fp32 (default), or bf16 (ours: bf16 copies under autocast; theirs: a bf16 model)",
    )
    p.add_argument(
        "--ours-dtype", choices=["fp32", "bf16", "auto"], default=None,
        help="our side only (default: --dtype): bf16 runs prompts under bf16 autocast on precast matrices, as "
        "`gptlab chat --dtype bf16` does; auto: bf16 where the CPU multiplies bf16 natively (AMX, AVX-512 BF16), "
        "else fp32; with --int8 the steps still read int8 with fp32 activations",
    )
    p.add_argument(
        "--int8", action="store_true",
        help="ours decodes from int8 copies of the weights (`Engine(int8_decode=True)`, `gptlab chat --int8-decode`); "
        "transformers keeps --dtype, so the row compares a quarter of the bytes against all of them",
    )
    p.add_argument(
        "--random", action="store_true", help="random weights even if runs/tiny/base exists"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile our batch-1 decode (benchmarks/results/decode_profile.txt)",
    )
    p.add_argument(
        "--out", default=str(RESULTS), help=f"results file (default: {RESULTS.relative_to(ROOT)})"
    )
    args = p.parse_args(argv)
    args.ours_dtype = args.ours_dtype or args.dtype
    if args.ours_dtype == "auto":
        from gptlab.common import pick_autocast_dtype

        args.ours_dtype = "fp32" if pick_autocast_dtype("cpu", "auto") is None else "bf16"
    if args.prompt_len is None:
        args.prompt_len = 64 if args.from_ else 32

    import torch
    import transformers

    from gptlab.infer import int8_gemv
    from gptlab.infer.engine import Engine

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model, source = build_model(args)
    model.eval().requires_grad_(False)  # as `load_for_inference` hands it to chat and serve
    vocab = model.config.vocab_size
    batches = [int(b) for b in args.batch_sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        hf = export_to_hf(model, Path(tmp), args.from_, args.dtype)
        # bf16: our engine decodes from bf16 copies of the weights under autocast (what `--dtype
        # auto` gives on a bf16-capable CPU); transformers holds the model in bf16.
        # --int8 keeps fp32 activations between the matrices (torch's fallback kernel casts each row to
        # bf16): under bf16 autocast the step was slower (26.4 against 18.7 ms on the Intel VM, 2026-12-06).
        autocast = torch.bfloat16 if args.ours_dtype == "bf16" else None
        if autocast is not None:  # as `load_for_inference` + `precast_for_autocast` hand it to chat and serve
            from gptlab.infer.loading import precast_for_autocast

            precast_for_autocast(model, autocast)
        # An imported model's max_seq_len (8192) would size the cache far beyond this race.
        max_len = args.prompt_len + args.new_tokens if args.from_ else None
        for b in batches:
            engine = Engine(model, eos_ids=set(), max_batch=b, max_len=max_len, autocast_dtype=autocast,
                            int8_decode=args.int8)
            if args.from_:
                tok_dir = Path(args.from_).parent / "tokenizer"
                prompts = chat_prompts(tok_dir, b, args.prompt_len, seed=b)
            else:
                prompts = prompts_for(b, args.prompt_len, vocab, seed=b)
            run_ours(engine, prompts, 4)  # warm-up both (allocations, first-call dispatch)
            run_hf(hf, prompts, 4)
            rows = {"ours": [], "hf": []}
            same, agree = None, 0.0
            for _ in range(args.repeats):
                wall, ttft, ours_ids = run_ours(engine, prompts, args.new_tokens)
                rows["ours"].append((wall, ttft))
                wall, ttft, hf_ids = run_hf(hf, prompts, args.new_tokens)
                rows["hf"].append((wall, ttft))
                same = ours_ids == hf_ids if same is None else (same and ours_ids == hf_ids)
                agree = statistics.fmean(common_prefix(x, y) / args.new_tokens for x, y in zip(ours_ids, hf_ids))
            # the share of each row's greedy tokens equal to theirs before the first difference
            entry = {"batch": b, "same_tokens": same, "same_prefix": round(agree, 3)}
            for side, vals in rows.items():
                walls, ttfts = [v[0] for v in vals], [v[1] for v in vals]
                entry[side] = {
                    "tokens_per_s": round(b * args.new_tokens / statistics.median(walls), 1),
                    "ttft_ms": round(1000 * statistics.median(ttfts), 2),
                    # best-of-repeats: on a shared machine the least disturbed run is the most telling
                    "tokens_per_s_best": round(b * args.new_tokens / min(walls), 1),
                    "ttft_ms_best": round(1000 * min(ttfts), 2),
                    # decode alone: the steps after the first token, per step of the whole batch
                    "ms_per_step": round(
                        1000
                        * statistics.median(
                            (w - t) / max(args.new_tokens - 1, 1) for w, t in zip(walls, ttfts)
                        ),
                        3,
                    ),
                    "wall_s": [round(w, 4) for w in walls],
                    "ttft_s": [round(t, 5) for t in ttfts],
                }
            entry["ratio_tokens_per_s"] = round(
                entry["ours"]["tokens_per_s"] / entry["hf"]["tokens_per_s"], 3
            )
            entry["ratio_ttft"] = round(
                entry["hf"]["ttft_ms"] / max(entry["ours"]["ttft_ms"], 1e-9), 3
            )
            results.append(entry)
            print(
                f"batch {b:3d}: ours {entry['ours']['tokens_per_s']:8.1f} tok/s  ttft {entry['ours']['ttft_ms']:7.2f} ms | "
                f"hf {entry['hf']['tokens_per_s']:8.1f} tok/s  ttft {entry['hf']['ttft_ms']:7.2f} ms | "
                f"ratio {entry['ratio_tokens_per_s']:.2f}x | same tokens: {same}",
                flush=True,
            )
        if args.profile:
            engine = Engine(model, eos_ids=set(), max_batch=1, max_len=max_len)
            text = profile_ours(
                engine,
                prompts_for(1, args.prompt_len, vocab, 1),
                args.new_tokens,
                Path(args.out).with_name("decode_profile.txt"),
            )
            print(text[:3000])

    bandwidth = copy_bandwidth()
    per_token = decode_bytes_per_token(model, 1 if args.int8 else 2 if args.ours_dtype == "bf16" else None)
    limit = bandwidth * 1e9 / per_token
    read = read_bandwidth()
    read_limit = read * 1e9 / per_token
    print(
        f"memory bandwidth {bandwidth:.1f} GB/s (copy), {read:.1f} GB/s (read); {per_token / 1e6:.0f} MB of weights per "
        f"token -> batch-1 limit {limit:.1f} tok/s (copy), {read_limit:.1f} (read); ours reaches "
        + ", ".join(f"{r['ours']['tokens_per_s'] / limit:.0%} / {r['ours']['tokens_per_s'] / read_limit:.0%}"
                    for r in results if r["batch"] == 1)
    )
    out = {
        "benchmark": "decode",
        "bandwidth": {
            "copy_gb_per_s": round(bandwidth, 2),
            "weight_bytes_per_token": per_token,
            "batch1_limit_tokens_per_s": round(limit, 1),
            "read_gb_per_s": round(read, 2),
            "batch1_limit_tokens_per_s_read": round(read_limit, 1),
            "how": "median of 7 torch copy_ of 512 MiB fp32 (read + write bytes / time), and of 7 sum() "
            "of 512 MiB (read bytes / time); weights "
            "per token: every parameter once, the embedding one row unless it is the tied head",
        },
        "command": "python benchmarks/bench_decode.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": source,
        "config": model.config.to_dict(),
        "params": sum(p.numel() for p in model.parameters()),
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "dtype": args.dtype,
        "ours_dtype": args.ours_dtype,
        "int8_decode": args.int8,
        "int8_kernel": ("compiled" if int8_gemv.available() else "torch") if args.int8 else None,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu": cpu_model(),
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    from gptlab.fileio import atomic_write_json

    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

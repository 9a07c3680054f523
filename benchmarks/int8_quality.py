"""Does `--int8-decode` (and a bf16 prefill beside it) change what a chat model answers? Greedy gym
accuracy of one model decoded three ways at batch 1, on the same held-out prompts, paired:

    fp32             the default: prompts and steps in fp32
    int8             `gptlab chat --int8-decode`: fp32 prompts, int8 steps
    int8+bf16        `gptlab chat --int8-decode --dtype bf16`: bf16 prompts on precast matrices

    python benchmarks/int8_quality.py --from runs/smol/sft --n 100

Prints each way's accuracy, tokens/s at batch 1 (prefill included), and against fp32: identical
replies, items fixed and broken, the paired gain's interval.
"""

from __future__ import annotations

import argparse
import time

import torch

from gptlab.algos.rollout import reply_messages
from gptlab.eval.metrics import paired_gain
from gptlab.infer.loading import load_for_inference, make_engine, precast_for_autocast
from gptlab.tasks import get_task

WAYS = {"fp32": (False, None), "int8": (True, None), "int8+bf16": (True, torch.bfloat16)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="from_", required=True, help="a chat model folder (e.g. runs/smol/sft)")
    p.add_argument("--task", default="gym", help="a generative task (default: gym)")
    p.add_argument("--n", type=int, default=100, help="held-out items (default: 100)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = get_task(args.task, split="test")
    items = [task.example(i) for i in range(args.n)]
    rows: dict[str, tuple[list[bool], list[list[int]]]] = {}
    for way, (int8, dtype) in WAYS.items():
        model, tok = load_for_inference(args.from_, "cpu")
        engine = make_engine(precast_for_autocast(model, dtype), tok, max_batch=1, autocast_dtype=dtype, int8_decode=int8)
        prompts = [tok.render_prompt(task.prompt(it)) for it in items]
        t = time.perf_counter()
        outs = [engine.generate_all([q], args.max_new_tokens, temperature=0.0)[0] for q in prompts]
        dt = time.perf_counter() - t
        ok = [bool(task.evaluate(it, reply_messages(tok, o)[0])) for it, o in zip(items, outs)]
        rows[way] = (ok, outs)
        line = f"{way:10s} acc {sum(ok) / args.n:.3f} ({sum(ok)}/{args.n}), {sum(map(len, outs)) / dt:.1f} tok/s, {dt:.0f} s"
        if way != "fp32":
            ref_ok, ref_outs = rows["fp32"]
            g = paired_gain([float(x) for x in ref_ok], [float(x) for x in ok])
            same = sum(x == y for x, y in zip(ref_outs, outs))
            line += (f" | vs fp32: {same} identical replies, fixed {g['fixed']}, broken {g['broken']}, "
                     f"gain {g['gain']:+.3f} ({g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f})")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

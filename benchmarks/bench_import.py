"""Parity of `gptlab import` on the real SmolLM2-135M-Instruct GGUF against transformers' own GGUF load.

    gptlab model get smollm2-135m-instruct --out runs/smol/base     # or: gptlab import FILE.gguf
    python benchmarks/bench_import.py --gguf ~/.cache/gptlab/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
        --stage runs/smol/base

Reports, in fp32 on CPU: the max abs logit difference on 5 prompts, whether greedy 64-token
continuations are identical (gptlab.infer.engine vs transformers generate), and whether the
imported tokenizer.json gives the same ids as transformers' tokenizer built from the GGUF.
"""

from __future__ import annotations

import argparse  # a benchmark script, not a gptlab command
import json
import platform
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from gptlab.infer.engine import Engine
from gptlab.model.io import load_model

PROMPTS = [
    "What is the capital of France?",
    "What is 12*7?",
    "Write a haiku about the sea.",
    "To be, or not to be, that is the question:",
    "Explain photosynthesis to a child.",
]
SAMPLE = (
    "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n"
    "Le cœur a ses raisons que la raison ne connaît point. Über allen Gipfeln ist Ruh. "
    "東京は日本の首都です。 Москва — столица России. 12*7 = 84, 3.14159, x += 1;\n\t  spaces  "
)


def chat_ids(tok, prompt: str) -> list[int]:
    out = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--stage", type=Path, required=True, help="the imported stage folder (runs/smol/base)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--fp64", action="store_true", help="also compare both models cast to fp64 on the first prompt "
                    "(a gap that stays is a difference in the math, not fp32 rounding)")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    ours = load_model(args.stage).eval()
    ref = AutoModelForCausalLM.from_pretrained(
        args.gguf.parent, gguf_file=args.gguf.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ref_tok = AutoTokenizer.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name)
    our_tok = Tokenizer.from_file(str(args.stage.parent / "tokenizer" / "tokenizer.json"))
    print(f"loaded both in {time.time() - t0:.1f}s; torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")

    sample_ok = our_tok.encode(SAMPLE).ids == ref_tok(SAMPLE)["input_ids"]
    print(f"tokenizer ids equal on the sample ({len(our_tok.encode(SAMPLE).ids)} tokens): {sample_ok}")
    prompts = [chat_ids(ref_tok, p) for p in PROMPTS]
    chat_ok = all(
        our_tok.encode(ref_tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False), add_special_tokens=False).ids == ids
        for p, ids in zip(PROMPTS, prompts)
    )
    print(f"tokenizer ids equal on the 5 rendered chat prompts: {chat_ok}")

    worst = 0.0
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            worst = max(worst, (ours(x) - ref(x).logits).abs().max().item())
    print(f"max abs logit difference over 5 prompts (fp32): {worst:.3g}")
    if args.fp64:
        with torch.no_grad():
            x = torch.tensor([prompts[0]])
            d64 = (ours.double()(x) - ref.double()(x).logits).abs().max().item()
        ours.float(), ref.float()
        print(f"max abs logit difference on the first prompt with both models in fp64: {d64:.3g}")

    eos = {ref_tok.convert_tokens_to_ids("<|im_end|>")}
    engine = Engine(ours, eos_ids=eos, max_batch=1)
    same = 0
    for p, ids in zip(PROMPTS, prompts):
        t1 = time.time()
        mine = engine.generate_all([ids], args.max_new_tokens, temperature=0.0)[0]
        t2 = time.time()
        with torch.no_grad():
            gen = ref.generate(torch.tensor([ids]), max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=list(eos), pad_token_id=next(iter(eos)))
        t3 = time.time()
        theirs = gen[0, len(ids):].tolist()
        same += mine == theirs
        text = our_tok.decode(mine, skip_special_tokens=True).replace("\n", " ")
        print(f"  {p!r} -> {text[:70]!r} | equal={mine == theirs} ({len(mine)} tokens; gptlab {t2 - t1:.1f}s, transformers {t3 - t2:.1f}s)")
    print(f"greedy {args.max_new_tokens}-token continuations identical: {same}/{len(PROMPTS)}")
    print(json.dumps({"max_abs_logit_diff": worst, "greedy_identical": f"{same}/{len(PROMPTS)}", "tokenizer_sample_equal": sample_ok, "chat_prompt_ids_equal": chat_ok}))


if __name__ == "__main__":
    main()

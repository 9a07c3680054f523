"""Parity of `gptlab import` on the real SmolLM2-135M-Instruct GGUF against transformers' own GGUF load.

    gptlab model get smollm2-135m-instruct --run smollm2     # or: gptlab import FILE.gguf --out ...
    python benchmarks/bench_import.py --gguf ~/.cache/gptlab/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
        --stage runs/smollm2/base

Reports, in fp32 on CPU: the max abs logit difference on 5 prompts, whether greedy 64-token
continuations are identical (gptlab.infer.engine vs transformers generate), and whether the
imported tokenizer.json gives the same ids as transformers' tokenizer built from the GGUF.

The reference is transformers with its default attention (sdpa), the same kernel gptlab's model
calls: then the logits are bit-identical. transformers' own eager attention differs from its sdpa
by ~1.5e-4 on these prompts (fp32 rounding of a different summation order, amplified by
SmolLM2's residual stream of norm ~4e3); that figure is printed too, as the noise floor.
Logits are compared on the reference's vocabulary (`[..., :V]`), so a stage with extra special
tokens appended to its vocabulary compares the same way.

The helpers here (prompts, reference loading, logits, greedy decoding) are shared with
bench_roundtrip.py.
"""

from __future__ import annotations

import argparse  # a benchmark script, not a gptlab command
import json
import platform
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer

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
END_OF_TURN = "<|im_end|>"  # ChatML, SmolLM2's template


def chat_ids(tok, prompt: str) -> list[int]:
    """The ids of a one-user-turn chat prompt ending with the assistant header (transformers' template)."""
    out = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def load_hf(folder: Path, gguf_file: str | None = None, attn: str = "sdpa"):
    """(model, tokenizer) from a transformers folder, or from `folder/gguf_file` by transformers' GGUF loader; fp32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # optional dependency

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation=attn, **kw
    ).eval()
    return model, AutoTokenizer.from_pretrained(folder, **kw)


@torch.no_grad()
def prompt_logits(
    model: torch.nn.Module, prompts: list[list[int]], vocab: int
) -> list[torch.Tensor]:
    """Logits (T, vocab) of each prompt, one forward each; gptlab models return a tensor, transformers an output."""
    outs = []
    for ids in prompts:
        y = model(torch.tensor([ids]))
        outs.append((y if isinstance(y, torch.Tensor) else y.logits)[0, :, :vocab].float())
    return outs


def max_gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Max abs difference over all prompts and positions."""
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def greedy_gptlab(
    model: torch.nn.Module, prompts: list[list[int]], eos: set[int], n: int
) -> list[list[int]]:
    """Greedy continuations by gptlab's engine (KV cache), each ending with the end-of-turn id if it stopped."""
    engine = Engine(model, eos_ids=eos, max_batch=1)
    return [engine.generate_all([ids], n, temperature=0.0)[0] for ids in prompts]


@torch.no_grad()
def greedy_hf(model, prompts: list[list[int]], eos: set[int], n: int) -> list[list[int]]:
    """Greedy continuations by transformers' generate, same convention as greedy_gptlab."""
    outs = []
    for ids in prompts:
        gen = model.generate(
            torch.tensor([ids]),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=sorted(eos),
            pad_token_id=min(eos),
        )
        outs.append(gen[0, len(ids) :].tolist())
    return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument(
        "--stage", type=Path, required=True, help="the imported stage folder (runs/smollm2/base)"
    )
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument(
        "--fp64",
        action="store_true",
        help="also compare both models cast to fp64 on the first prompt "
        "(transformers' RMSNorm still rounds to fp32 there, so this is ~2e-5, not zero)",
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    ours = load_model(args.stage).eval()
    ref, ref_tok = load_hf(args.gguf.parent, args.gguf.name)
    eager, _ = load_hf(args.gguf.parent, args.gguf.name, attn="eager")
    our_tok = Tokenizer.from_file(str(args.stage.parent / "tokenizer" / "tokenizer.json"))
    print(
        f"loaded in {time.time() - t0:.1f}s; torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}"
    )

    sample_ok = our_tok.encode(SAMPLE).ids == ref_tok(SAMPLE)["input_ids"]
    print(
        f"tokenizer ids equal on the sample ({len(our_tok.encode(SAMPLE).ids)} tokens): {sample_ok}"
    )
    prompts = [chat_ids(ref_tok, p) for p in PROMPTS]
    chat_ok = all(
        our_tok.encode(
            ref_tok.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        ).ids
        == ids
        for p, ids in zip(PROMPTS, prompts)
    )
    print(f"tokenizer ids equal on the 5 rendered chat prompts: {chat_ok}")

    vocab = ref.config.vocab_size
    ref_logits = prompt_logits(ref, prompts, vocab)
    worst = max_gap(prompt_logits(ours, prompts, vocab), ref_logits)
    floor = max_gap(prompt_logits(eager, prompts, vocab), ref_logits)
    print(
        f"max abs logit difference over 5 prompts (fp32, vocab[:{vocab}]): {worst:.3g} "
        f"(transformers eager vs its own sdpa: {floor:.3g})"
    )
    eos = {ref_tok.convert_tokens_to_ids(END_OF_TURN)}
    t1 = time.time()
    mine = greedy_gptlab(ours, prompts, eos, args.max_new_tokens)
    t2 = time.time()
    theirs = greedy_hf(ref, prompts, eos, args.max_new_tokens)
    t3 = time.time()
    for p, a, b in zip(PROMPTS, mine, theirs):
        text = our_tok.decode(a, skip_special_tokens=True).replace("\n", " ")
        print(f"  {p!r} -> {text[:70]!r} | equal={a == b} ({len(a)} tokens)")
    same = sum(a == b for a, b in zip(mine, theirs))
    print(
        f"greedy {args.max_new_tokens}-token continuations identical: {same}/{len(PROMPTS)} "
        f"(gptlab {t2 - t1:.1f}s, transformers {t3 - t2:.1f}s for all 5)"
    )
    d64 = None
    if args.fp64:  # last: transformers refuses to cast a GGUF-loaded model back with .float()
        with torch.no_grad():
            x = torch.tensor([prompts[0]])
            d64 = (
                (ours.double()(x)[..., :vocab] - ref.double()(x).logits[..., :vocab])
                .abs()
                .max()
                .item()
            )
        print(f"max abs logit difference on the first prompt with both models in fp64: {d64:.3g}")
    print(
        json.dumps(
            {
                "max_abs_logit_diff": worst,
                "eager_vs_sdpa_in_transformers": floor,
                "greedy_identical": f"{same}/{len(PROMPTS)}",
                "tokenizer_sample_equal": sample_ok,
                "chat_prompt_ids_equal": chat_ok,
                "fp64_first_prompt": d64,
            }
        )
    )


if __name__ == "__main__":
    main()

"""`gptlab sample`: print continuations of a prompt from a trained stage folder.

    gptlab sample --from runs/tiny/base --prompt "ROMEO:" --num-samples 3 --seed 0

The prompt is encoded after `<|endoftext|>`, because every pretraining document starts with that
token: the model then continues the prompt as the start of a fresh document. A sample ends at
`--max-new-tokens` or at the next `<|endoftext|>` (the end of the document).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptlab.infer.cli_args import add_sampling_args, add_source_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab sample",
        description="Print continuations of a prompt from a trained model (full forward per token).",
    )
    add_source_args(p, "base")
    p.add_argument(
        "--prompt",
        metavar="TEXT",
        default="",
        help="text to continue (default: empty, a fresh document)",
    )
    p.add_argument(
        "--max-new-tokens",
        metavar="N",
        type=int,
        default=200,
        help="tokens to sample per sample (default: 200)",
    )
    add_sampling_args(p)
    p.add_argument(
        "--num-samples",
        metavar="N",
        type=int,
        default=1,
        help="how many samples to print (default: 1)",
    )
    p.add_argument(
        "--seed",
        metavar="SEED",
        type=int,
        default=None,
        help="seed for reproducible samples; sample i uses seed+i (default: random)",
    )
    p.add_argument(
        "--device",
        metavar="NAME",
        default="auto",
        help="cpu, cuda, cuda:1, mps or auto (default: auto)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gptlab.common import pick_device, run_dir
    from gptlab.errors import InputError
    from gptlab.infer.sampling import generate
    from gptlab.model.io import load_model
    from gptlab.tokenizer.bpe import Tokenizer

    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise InputError(None, "--max-new-tokens must be >= 0 and --num-samples >= 1")
    if args.temperature < 0 or (args.top_k is not None and args.top_k < 1):
        raise InputError(None, "--temperature must be >= 0 and --top-k >= 1")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise InputError(None, "--top-p must be in (0, 1]")
    src = Path(args.src) if args.src else run_dir(args.run, "base")
    device = pick_device(args.device)
    model = load_model(src, device=device)  # InputError when src is not a stage folder
    tok = Tokenizer.load(Path(args.tokenizer) if args.tokenizer else src.parent / "tokenizer")
    if tok.vocab_size > model.config.vocab_size:
        raise InputError(
            src,
            f"model vocab_size {model.config.vocab_size} < tokenizer's {tok.vocab_size}: wrong tokenizer?",
        )

    prompt_ids = [tok.eot_id] + tok.encode(args.prompt)
    for i in range(args.num_samples):
        new = generate(
            model,
            prompt_ids,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=None if args.seed is None else args.seed + i,
            stop_ids={tok.eot_id},
        )
        if new and new[-1] == tok.eot_id:
            new = new[:-1]
        # A model whose vocab is padded past the tokenizer's can (untrained) sample ids the
        # tokenizer lacks: drop them rather than crash the decode.
        text = tok.decode([t for t in new if t < tok.vocab_size])
        if args.num_samples > 1:
            print(f"--- sample {i + 1}/{args.num_samples}")
        print(args.prompt + text)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

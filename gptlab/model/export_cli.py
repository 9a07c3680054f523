"""`gptlab export SRC DST`: write a stage folder as a Hugging Face LlamaForCausalLM folder.

gptlab export runs/tiny/base out/tiny-hf
python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('out/tiny-hf')"
"""

from __future__ import annotations

import argparse

# The names of gptlab.model.hf.DTYPES, spelled out so `--help` does not import torch.
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab export",
        description="Write a trained stage folder (model.safetensors + config.json) as a Hugging Face "
        "folder that transformers loads as LlamaForCausalLM and llama.cpp can convert.",
    )
    p.add_argument("src", help="stage folder to export, e.g. runs/tiny/base")
    p.add_argument("dst", help="output folder; written to a temp folder beside it, then renamed")
    p.add_argument(
        "--tokenizer",
        metavar="DIR",
        default=None,
        help="tokenizer folder whose tokenizer.json etc. are copied (default: SRC/../tokenizer)",
    )
    p.add_argument(
        "--no-tokenizer",
        action="store_true",
        help="export the weights and config only (no tokenizer files, no bos/eos ids)",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPE_NAMES,
        default="float32",
        help="precision of the written weights (default: float32, exact)",
    )
    p.add_argument("--force", action="store_true", help="replace DST if it exists and is not empty")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gptlab.model.hf import export_hf

    out = export_hf(
        args.src,
        args.dst,
        tokenizer_dir=args.tokenizer,
        dtype=args.dtype,
        include_tokenizer=not args.no_tokenizer,
        overwrite=args.force,
    )
    print(f"wrote {out} (LlamaForCausalLM, {args.dtype})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

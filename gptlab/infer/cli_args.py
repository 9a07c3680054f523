"""Flags shared by the commands that generate (`gptlab sample`, `gptlab chat`): which model, how to sample."""

from __future__ import annotations

import argparse


def add_sampling_args(p: argparse.ArgumentParser, top_p: float | None = None) -> None:
    """--temperature, --top-k, --top-p (see gptlab.infer.sampling.sample_next)."""
    p.add_argument("--temperature", metavar="T", type=float, default=0.8,
                   help="softmax temperature; 0 is greedy (default: 0.8)")
    p.add_argument("--top-k", metavar="K", type=int, default=50,
                   help="sample among the k most likely tokens only; a k >= the vocabulary turns it off (default: 50)")
    p.add_argument("--top-p", metavar="P", type=float, default=top_p,
                   help="nucleus sampling: the most likely tokens up to this probability mass; 1 turns it off "
                   f"(default: {top_p if top_p is not None else 'off'})")


def add_source_args(p: argparse.ArgumentParser, default_stage: str) -> None:
    """--run, --from (dest `src`), --tokenizer: the stage folder to load and its tokenizer."""
    p.add_argument("--run", metavar="NAME", default="tiny", help="run name filling the default paths (default: tiny)")
    p.add_argument("--from", dest="src", metavar="DIR", default=None,
                   help=f"stage folder: full weights or a LoRA adapter folder (default: runs/<run>/{default_stage})")
    p.add_argument("--tokenizer", metavar="DIR", default=None,
                   help="tokenizer folder (default: the tokenizer/ folder beside the stage folder)")

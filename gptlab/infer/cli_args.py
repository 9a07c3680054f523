"""Sampling flags shared by the commands that generate (`gptlab sample`, `gptlab chat`)."""

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

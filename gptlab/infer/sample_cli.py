"""`gptlab sample`: print continuations of a prompt from a trained stage folder.

    gptlab sample --from runs/tiny/base --prompt "ROMEO:" --num-samples 3 --seed 0

The prompt is encoded after `<|endoftext|>`, because every pretraining document starts with that
token: the model then continues the prompt as the start of a fresh document. A sample ends at
`--max-new-tokens` or at the next `<|endoftext|>` (the end of the document).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.commandline import parse
from gptlab.common import pick_device
from gptlab.errors import InputError
from gptlab.infer.cli_args import SamplingArgs
from gptlab.infer.sampling import generate
from gptlab.model.io import load_model
from gptlab.tokenizer.loading import load_tokenizer


@dataclass
class SampleConfig(SamplingArgs):
    """Print continuations of a prompt from a trained model (full forward per token).
    --from defaults to runs/<run>/base."""

    prompt: str = ""  # text to continue (empty: a fresh document)
    max_new_tokens: int = 200  # tokens to sample per sample
    num_samples: int = 1  # how many samples to print


def run(cfg: SampleConfig) -> int:
    cfg.check_sampling(min_new_tokens=0)
    if cfg.num_samples < 1:
        raise InputError(None, "--num-samples must be >= 1")
    src = cfg.model_dir("base")
    model = load_model(src, device=pick_device(cfg.device))  # InputError when src is not a stage folder
    tok = load_tokenizer(Path(cfg.tokenizer) if cfg.tokenizer else src.parent / "tokenizer")
    if tok.vocab_size > model.config.vocab_size:
        raise InputError(
            src,
            f"model vocab_size {model.config.vocab_size} < tokenizer's {tok.vocab_size}: wrong tokenizer?",
        )

    prompt_ids = [tok.eot_id] + tok.encode(cfg.prompt)
    for i in range(cfg.num_samples):
        new = generate(
            model,
            prompt_ids,
            cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            top_p=cfg.top_p,
            seed=None if cfg.seed is None else cfg.seed + i,
            stop_ids={tok.eot_id},
        )
        if new and new[-1] == tok.eot_id:
            new = new[:-1]
        # A model whose vocab is padded past the tokenizer's can (untrained) sample ids the
        # tokenizer lacks: drop them rather than crash the decode.
        text = tok.decode([t for t in new if t < tok.vocab_size])
        if cfg.num_samples > 1:
            print(f"--- sample {i + 1}/{cfg.num_samples}")
        print(cfg.prompt + text)
        sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(SampleConfig, argv, "gptlab sample"))


if __name__ == "__main__":
    raise SystemExit(main())

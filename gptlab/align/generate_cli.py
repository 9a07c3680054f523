"""`gptlab rank generate`: sample K answers per prompt into a candidates file, for a person
(`gptlab rank label`) or a judge model (`gptlab rank judge`) to order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gptlab.align.candidates import sample_responses, save_candidates
from gptlab.align.options import SamplingOptions
from gptlab.commandline import parse
from gptlab.eval.prompts import read_prompts


@dataclass(kw_only=True)
class GenerateConfig(SamplingOptions):
    """Sample K answers per prompt into a candidates file (default: runs/<run>/rankings/candidates.jsonl)."""

    prompts: Path  # prompts: a .txt file (one user message per line) or JSONL with 'prompt' (string or messages)


def run(cfg: GenerateConfig) -> int:
    prompts = read_prompts(cfg.prompts)
    engine, tok = cfg.engine()
    got = sample_responses(engine, tok, prompts, cfg.k, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.seed)
    cands = [c for c in got if c is not None]
    out = cfg.output("candidates.jsonl")
    save_candidates(out, cands)
    print(f"{len(cands)} prompts x {cfg.k} answers -> {out} ({len(got) - len(cands)} too long, skipped)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(GenerateConfig, argv, "gptlab rank generate"))

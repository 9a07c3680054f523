"""Options every `gptlab rank` command shares: where the rankings go, and how answers are sampled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gptlab.common import run_dir
from gptlab.errors import InputError
from gptlab.infer.engine import Engine
from gptlab.infer.loading import load_for_inference, make_engine, precast_for_autocast
from gptlab.options import FromPath, InferenceArgs, RunArgs
from gptlab.tokenizer.protocol import TokenizerLike


@dataclass
class RankOutput(RunArgs):
    """Where a rank command writes: runs/<run>/rankings/ unless --out says otherwise."""

    out: Path | None = None  # output file (default: runs/<run>/rankings/<command>.jsonl)

    def output(self, name: str) -> Path:
        """--out, or runs/<run>/rankings/<name>."""
        return self.out or run_dir(self.run, "rankings") / name


@dataclass
class SamplingOptions(RankOutput, InferenceArgs):
    """How K answers per prompt are sampled from a model."""

    from_: FromPath = None  # model folder to sample from (default: runs/<run>/sft)
    k: int = 4  # answers sampled per prompt
    max_new_tokens: int = 48  # longest answer, in tokens
    temperature: float = 1.0  # sampling temperature (diversity among the K)
    top_k: int | None = None  # sample among the k likeliest tokens only (None: all)
    seed: int = 0  # sampling seed (answer j uses seed + j)
    batch_size: int = 64  # answers generated at once

    def sampling(self) -> dict:
        """The keyword arguments of `sample_responses` these options set."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_k": self.top_k,
                "seed": self.seed}

    def engine(self) -> tuple[Engine, TokenizerLike]:
        """The model to sample from, behind an engine batching --batch-size answers."""
        if self.k < 2:
            raise InputError(None, "--k must be at least 2 (a ranking compares answers)")
        model, tok = load_for_inference(self.from_ or run_dir(self.run, "sft"), device=self.device)
        dtype = self.autocast_dtype(model)
        return make_engine(precast_for_autocast(model, dtype), tok, max_batch=self.batch_size, autocast_dtype=dtype), tok

"""`gptlab eval diversity`: entropy and distinct-n of samples from several stages on the same prompts.

    gptlab eval diversity --run tiny                      # base, sft, rl of runs/tiny (those that exist)
    gptlab eval diversity --models sft=runs/tiny/sft rl=runs/tiny/rl --samples 8

What each figure means, and why: `gptlab.eval.diversity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptlab.algos.rollout import file_prompts, task_prompts
from gptlab.commandline import parse
from gptlab.common import run_dir
from gptlab.errors import InputError
from gptlab.eval.diversity import sample_stats
from gptlab.eval.prompts import read_prompts
from gptlab.fileio import atomic_write_json
from gptlab.infer.loading import load_for_inference
from gptlab.options import DeviceArgs, RunArgs
from gptlab.tasks import split_names
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.tokenizer.protocol import TokenizerLike

COLUMNS = ("entropy", "distinct_1", "distinct_2", "distinct_3", "distinct_2_within", "identical_frac", "length")


@dataclass
class DiversityConfig(RunArgs, DeviceArgs):
    """Mode collapse, measured: each model samples K replies per prompt at the same temperature
    and seeds; writes entropy, distinct-n, within-prompt distinct-2 and identical-reply rates."""

    models: tuple[str, ...] = ()  # models to compare as NAME=PATH pairs (default: base, sft, rl of the run, those that exist)
    tokenizer: Path | None = None  # tokenizer folder (default: runs/<run>/tokenizer)
    tasks: tuple[str, ...] = ("arithmetic", "identity", "play_speaker")  # tasks whose test-split prompts are used
    prompts: Path | None = None  # prompts file (.txt one per line, or JSONL 'prompt') instead of --tasks
    n_prompts: int = 32  # prompts per task
    samples: int = 4  # replies sampled per prompt (K)
    max_new_tokens: int = 48  # reply budget in tokens
    temperature: float = 1.0  # sampling temperature (the same for every model)
    seed: int = 0  # sampling seed (the same for every model)
    out: Path | None = None  # report (default: runs/<run>/eval/diversity.json)


def model_folders(cfg: DiversityConfig) -> list[tuple[str, Path]]:
    """(name, folder) per model: --models NAME=PATH pairs, else the run's base, sft and rl that exist."""
    if cfg.models:
        out = []
        for spec in cfg.models:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise InputError(None, f"--models: expected NAME=PATH, got {spec!r}")
            out.append((name, Path(path)))
        return out
    found = [(s, run_dir(cfg.run, s)) for s in ("base", "sft", "rl") if (run_dir(cfg.run, s) / "config.json").exists()]
    if not found:
        raise InputError(run_dir(cfg.run), "no base/sft/rl model here; give --models NAME=PATH ...")
    return found


def prompt_ids(cfg: DiversityConfig, tok: TokenizerLike, room: int) -> list[list[int]]:
    """The prompts every model answers, as token ids that leave `room` for the reply."""
    if cfg.prompts is not None:
        pool, _ = file_prompts(tok, read_prompts(cfg.prompts)[: cfg.n_prompts], room)
    else:
        try:
            pool, _ = task_prompts(tok, split_names(cfg.tasks), "test", cfg.n_prompts, room, seed=0)
        except ValueError as e:
            raise InputError(None, f"--tasks: {e}") from None
    if not pool:
        raise InputError(cfg.prompts, "no prompt fits the model's context")
    return [p.ids for p in pool]


def run(cfg: DiversityConfig) -> int:
    if cfg.samples < 2 or cfg.n_prompts < 1:
        raise InputError(None, "--samples must be at least 2 and --n-prompts at least 1")
    models = model_folders(cfg)
    tok = load_tokenizer(cfg.tokenizer or run_dir(cfg.run, "tokenizer"))
    results: dict[str, Any] = {}
    prompts: list[list[int]] | None = None
    for name, path in models:
        model, _ = load_for_inference(path, device=cfg.device, tokenizer=tok)
        if prompts is None:  # from the first model's context length
            prompts = prompt_ids(cfg, tok, model.config.max_seq_len - cfg.max_new_tokens - 1)
        results[name] = sample_stats(model, tok, prompts, cfg.samples, cfg.max_new_tokens, cfg.temperature,
                                     cfg.seed)
        results[name]["path"] = str(path)
    report = {"prompts": len(prompts or []), "samples": cfg.samples, "temperature": cfg.temperature,
              "max_new_tokens": cfg.max_new_tokens, "models": results}
    out = cfg.out or run_dir(cfg.run, "eval") / "diversity.json"
    atomic_write_json(out, report)
    print(f"{'model':<8} " + " ".join(f"{c:>17}" for c in COLUMNS))
    for name, r in results.items():
        print(f"{name:<8} " + " ".join(f"{r[c]:>17.3f}" for c in COLUMNS))
    print(f"-> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(DiversityConfig, argv, "gptlab eval diversity"))

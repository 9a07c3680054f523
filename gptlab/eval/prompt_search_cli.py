"""`gptlab prompt search`: rank trigger phrases or instructions on a task's dev (train) split, then
report every one on held-out (test) items with 95% intervals and the chosen phrase's paired gain
over no phrase (see `gptlab.eval.prompt_search`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gptlab.commandline import parse
from gptlab.common import autocast_context, run_dir, run_metadata
from gptlab.errors import InputError
from gptlab.eval.prompt_search import BUILTIN, read_candidates, search, table
from gptlab.fileio import atomic_write_text
from gptlab.infer.loading import load_for_inference, make_engine, precast_for_autocast
from gptlab.options import FromPath, InferenceArgs, RunArgs
from gptlab.tasks import scorable_task


@dataclass
class PromptSearchConfig(RunArgs, InferenceArgs):
    """Which phrase helps this model on this task? Scores each candidate phrase (and no phrase) on
    the first --dev items of the task's train split, ranks them there, then scores them on the first
    --test items of its test split, so the choice is never judged on the items that made it. Prints a
    table (held-out accuracy with a bootstrap 95% interval per phrase; the paired gain of the phrase
    chosen on dev over no phrase) and writes it as JSON. Built-in candidates: the zero-shot trigger
    table of Kojima et al. 2022 (instructive, misleading and irrelevant phrases) and APE's best."""

    from_: FromPath = None  # model folder (default: runs/<run>/sft)
    task: str = "arithmetic"  # a scorable task (gptlab.tasks): arithmetic, gym, play_speaker, ...
    candidates: Path | None = None  # text file, one phrase per line ('#' comments); default: the built-in table
    placement: Literal["reply", "question", "instruction"] = "reply"  # where the phrase goes: the start of the reply (Kojima et al.), after the question (`gptlab eval --mode cot`), or before it (APE's instructions)
    dev: int = 50  # train-split items every candidate is ranked on
    test: int = 200  # held-out test-split items the table reports
    top: int | None = None  # report only the N best on dev on held-out items, plus no phrase (None: all)
    shots: int = 0  # few-shot examples (the train split's first items; the dev items follow them)
    max_new_tokens: int = 96  # reply length limit (step-by-step replies are longer than bare answers)
    batch_size: int = 32  # rows generated at once
    bootstrap: int = 2000  # bootstrap draws per interval
    seed: int = 0  # task order and bootstrap seed
    out: Path | None = None  # JSON result (default: runs/<run>/prompt_search/<task>.json)


def run(cfg: PromptSearchConfig) -> int:
    for flag, v, lo in (("--dev", cfg.dev, 1), ("--test", cfg.test, 1), ("--top", cfg.top, 1),
                        ("--shots", cfg.shots, 0), ("--max-new-tokens", cfg.max_new_tokens, 1)):
        if v is not None and v < lo:
            raise InputError(None, f"{flag} must be >= {lo}, got {v}")
    phrases = read_candidates(cfg.candidates) if cfg.candidates else list(BUILTIN)
    dev_task, test_task = scorable_task(cfg.task, "train", cfg.seed), scorable_task(cfg.task, "test", cfg.seed)
    # dev items start after the few-shot examples, which are the train split's first items
    dev = [dev_task.example(i) for i in range(cfg.shots, min(cfg.shots + cfg.dev, len(dev_task)))]
    test = [test_task.example(i) for i in range(min(cfg.test, len(test_task)))]
    stage = cfg.from_ or run_dir(cfg.run, "sft")
    model, tok = load_for_inference(stage, cfg.device)
    dtype = cfg.autocast_dtype(model)
    engine = make_engine(precast_for_autocast(model, dtype), tok, max_batch=cfg.batch_size, autocast_dtype=dtype)
    t0 = time.perf_counter()
    with autocast_context(next(model.parameters()).device, dtype):
        result = search(engine, tok, (dev_task, dev), (test_task, test), phrases, cfg.placement, cfg.shots,
                        cfg.max_new_tokens, cfg.top, cfg.bootstrap, cfg.seed)
    result.update(task=cfg.task, model=str(stage), seconds=round(time.perf_counter() - t0, 1),
                  dtype="bf16" if dtype is not None else "fp32", metadata=run_metadata(cfg.device))
    print(table(result))
    out = cfg.out or run_dir(cfg.run, "prompt_search") / f"{cfg.task}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(PromptSearchConfig, argv, "gptlab prompt search"))

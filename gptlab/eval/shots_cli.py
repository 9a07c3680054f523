"""`gptlab prompt shots`: do demonstrations picked by retrieval beat random ones on this model?

Scores the same held-out (test) items with the shots each pick gives them (`gptlab.eval.shots`:
first, random, bm25), then reports each pick's accuracy with a bootstrap 95% interval and its
paired gain over the first pick listed (default: bm25 over random, Liu et al. 2021's comparison),
with the items fixed and broken and a sign test. Multiple-choice tasks are scored by
log-likelihood (`gptlab eval --mode mc`), the others by greedy replies (`--mode gen`), so each
row equals `gptlab eval --shots K --shot-pick P` on the same items.

    gptlab prompt shots --from runs/smol/base --task play_speaker --shots 4 --test 200
    gptlab prompt shots --from runs/smol/base --task arithmetic --picks random bm25 first
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from gptlab.commandline import parse
from gptlab.common import autocast_context, run_dir, run_metadata
from gptlab.errors import InputError
from gptlab.eval.generative import generate_scores, mc_item
from gptlab.eval.metrics import bootstrap_ci, paired_gain
from gptlab.eval.multiple_choice import score_multiple_choice
from gptlab.eval.shots import PICKS, item_shots
from gptlab.fileio import atomic_write_text
from gptlab.infer.engine import Engine
from gptlab.infer.loading import load_for_inference, make_engine, precast_for_autocast
from gptlab.options import FromPath, InferenceArgs, RunArgs
from gptlab.tasks import Item, Task, scorable_task
from gptlab.tokenizer.protocol import TokenizerLike

Pick = Literal["first", "random", "bm25"]


@dataclass
class ShotsConfig(RunArgs, InferenceArgs):
    """Random vs retrieved demonstrations, paired on the same held-out items. Each pick in --picks
    gives every one of the first --test items of the task's test split its --shots demonstrations
    from the train split (first: the same first K for all; random: K drawn per item; bm25: the K
    whose questions are nearest by BM25, Liu et al. 2021); the table shows each pick's accuracy with
    a 95% interval and its paired gain over the first pick listed. Written as JSON."""

    from_: FromPath = None  # model folder (default: runs/<run>/sft)
    task: str = "arithmetic"  # a scorable task (gptlab.tasks): arithmetic, play_speaker, gym, ...
    picks: tuple[Pick, ...] = ("random", "bm25")  # how shots are chosen; gains are over the first listed
    shots: int = 4  # demonstrations per item
    test: int = 200  # held-out test-split items scored
    mode: Literal["auto", "mc", "gen"] = "auto"  # mc: log-likelihood of each choice; gen: greedy reply; auto: mc if the task has choices
    max_new_tokens: int = 64  # reply length limit (gen)
    batch_size: int = 32  # rows generated at once
    bootstrap: int = 2000  # bootstrap draws per interval
    seed: int = 0  # task order, random picks and bootstrap seed
    out: Path | None = None  # JSON result (default: runs/<run>/prompt_shots/<task>.json)


def score_pick(model: torch.nn.Module, engine: Engine | None, tok: TokenizerLike, task: Task, items: list[Item],
               cfg: ShotsConfig, pick: str) -> list[int]:
    """0/1 per item with the shots `pick` gives each item, as `gptlab eval` scores them (mc without an engine)."""
    if engine is None:
        shots = item_shots(task, items, cfg.shots, pick, cfg.seed)
        mc = [mc_item(tok, task, it, s, "chat") for it, s in zip(items, shots)]
        return [int(c) for c in score_multiple_choice(model, mc, progress=True)["item_correct"]]
    res = generate_scores(engine, tok, task, items, "gen", cfg.shots, max_new_tokens=cfg.max_new_tokens,
                          seed=cfg.seed, progress=True, shot_pick=pick)
    return [int(r.correct) for r in res]


def compare(scores: dict[str, list[int]], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Rows of accuracy (95% CI) per pick and the paired gain of each over the first pick.

    >>> r = compare({"random": [0, 1, 0, 0], "bm25": [1, 1, 0, 1]}, n_boot=200)
    >>> r["rows"][1]["pick"], r["rows"][1]["acc"], r["rows"][1]["gain"]["fixed"]
    ('bm25', 0.75, 2)
    """
    base = next(iter(scores))
    rows = []
    for pick, s in scores.items():
        row: dict[str, Any] = {"pick": pick, "acc": sum(s) / len(s), "ci95": list(bootstrap_ci(s, n=n_boot, seed=seed))}
        if pick != base:
            row["gain"] = paired_gain(scores[base], s, n=n_boot, seed=seed)
        rows.append(row)
    return {"baseline": base, "rows": rows}


def table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = [f"| shots picked | held-out acc (95% CI) | paired gain over {result['baseline']} |", "|---|---|---|"]
    for r in result["rows"]:
        gain = "(baseline)"
        if "gain" in r:
            g = r["gain"]
            gain = (f"{g['gain']:+.3f} (95% CI {g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f}), fixed {g['fixed']} / "
                    f"broken {g['broken']}, sign test p = {g['sign_test_p']:.3g}")
        lines.append(f"| {r['pick']} | {r['acc']:.3f} ({r['ci95'][0]:.3f} to {r['ci95'][1]:.3f}) | {gain} |")
    return "\n".join(lines)


def run(cfg: ShotsConfig) -> int:
    for flag, v, lo in (("--shots", cfg.shots, 1), ("--test", cfg.test, 1), ("--max-new-tokens", cfg.max_new_tokens, 1)):
        if v < lo:
            raise InputError(None, f"{flag} must be >= {lo}, got {v}")
    picks = list(dict.fromkeys(cfg.picks))
    if len(picks) < 2 or any(p not in PICKS for p in picks):
        raise InputError(None, f"--picks needs at least two of {', '.join(PICKS)}, got {' '.join(cfg.picks)}")
    task = scorable_task(cfg.task, "test", cfg.seed)
    items = [task.example(i) for i in range(min(cfg.test, len(task)))]
    mode = cfg.mode if cfg.mode != "auto" else ("mc" if items[0].choices else "gen")
    if mode == "mc" and not items[0].choices:
        raise InputError(None, f"task {cfg.task!r} has no choices: use --mode gen")
    stage = cfg.from_ or run_dir(cfg.run, "sft")
    model, tok = load_for_inference(stage, cfg.device)
    dtype = cfg.autocast_dtype(model)
    precast_for_autocast(model, dtype)
    engine = None if mode == "mc" else make_engine(model, tok, max_batch=cfg.batch_size, autocast_dtype=dtype)
    t0 = time.perf_counter()
    with autocast_context(next(model.parameters()).device, dtype):
        scores = {p: score_pick(model, engine, tok, task, items, cfg, p) for p in picks}
    result = compare(scores, cfg.bootstrap, cfg.seed)
    result.update(task=cfg.task, mode=mode, shots=cfg.shots, n_test=len(items), model=str(stage), per_item=scores,
                  seconds=round(time.perf_counter() - t0, 1), dtype="bf16" if dtype is not None else "fp32",
                  metadata=run_metadata(cfg.device))
    print(table(result))
    out = cfg.out or run_dir(cfg.run, "prompt_shots") / f"{cfg.task}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ShotsConfig, argv, "gptlab prompt shots"))

"""`gptlab eval`: score a stage folder on held-out tasks; results merge into `<stage>/eval.json`.

    gptlab eval --from runs/tiny/base --tasks bpb play_speaker --limit 100       # base: text format
    gptlab eval --from runs/tiny/sft --tasks play_speaker arithmetic --limit 50
    gptlab eval --from runs/tiny/sft --tasks arithmetic --mode sc --n-samples 5 --limit 20
    gptlab eval --from runs/tiny/sft --tasks arithmetic --mode tot --tot-beam 2 --tot-depth 3 --limit 20
    gptlab eval --from runs/smol/base --tasks play_speaker --shots 4 --shot-pick bm25   # nearest shots
    gptlab eval --from runs/tiny/rm --tasks play_speaker                         # reward model: pairs

Task names: `bpb` (bits per byte, perplexity and the unigram baseline on the run's val shards) and
every scorable task of `gptlab.tasks`, always on its *test* split (disjoint from what SFT
and RL train on, by construction). Modes: `mc` (log-likelihood of each choice: acc, acc_norm,
random baseline, centred accuracy), `gen` / `cot` / `sc` (see `gptlab.eval.generative`), `tot`
(tree of thoughts: `gptlab.eval.tree_of_thoughts`); every generative record counts `gen_tokens`,
the tokens generated per item, so modes compare at equal compute; `auto`
picks mc for tasks with choices and gen otherwise. A folder holding a reward model
(`head.safetensors`) is scored on (right, wrong) reply pairs built from the task: pairwise
accuracy and classifier metrics (`gptlab.eval.judge.rm_accuracy`).
"""

from __future__ import annotations

import hashlib
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
from gptlab.eval.bpb import eval_bpb
from gptlab.eval.generative import generate_scores, mc_item, summarise
from gptlab.eval.judge import RewardScorer, rm_accuracy, task_pairs
from gptlab.eval.multiple_choice import score_multiple_choice
from gptlab.eval.results import EVAL_FILE, merge_results
from gptlab.eval.shots import item_shots
from gptlab.eval.tree_of_thoughts import ToTConfig, tot_scores
from gptlab.infer.engine import Engine
from gptlab.infer.loading import load_for_inference, make_engine, precast_for_autocast
from gptlab.options import FromPath, InferenceArgs, RunArgs
from gptlab.tasks import Item, Task, scorable_task, split_names
from gptlab.tokenizer.protocol import TokenizerLike


@dataclass
class EvalConfig(RunArgs, InferenceArgs):
    """Evaluate a stage folder (base, sft, rl, rm) on held-out tasks; results merge into
    <stage>/eval.json, keyed by task and mode. `gptlab eval judge --help`: model A vs model B;
    `gptlab eval diversity --help`: entropy and distinct-n of samples from several stages."""

    from_: FromPath = None  # stage folder to evaluate (default: runs/<run>/sft)
    tokenizer: Path | None = None  # tokenizer folder (default: the stage's sibling 'tokenizer')
    tasks: tuple[str, ...] = ("bpb", "play_speaker", "arithmetic")  # tasks to run: bpb and/or task names; NAME:N scores that task's first N test items (overrides --limit)
    mode: Literal["auto", "mc", "gen", "cot", "sc", "tot"] = "auto"  # mc: log-likelihood of each choice; gen: greedy reply + exact match; cot: with "Let's think step by step."; sc: self-consistency over --n-samples; tot: tree of thoughts (--tot-*); auto: mc if the task has choices
    shots: int = 0  # few-shot examples from the task's train split
    shot_pick: Literal["first", "random", "bm25"] = "first"  # which train items are the shots: the first K for every item, K at random per item, or the K nearest to each question by BM25 (Liu et al. 2021)
    format: Literal["auto", "chat", "text"] = "auto"  # multiple-choice prompt format: chat template, or plain 'Question:/Answer:' text for base models; auto: text for a folder named 'base', chat otherwise
    n_samples: int = 5  # samples per question for --mode sc
    temperature: float = 0.8  # sampling temperature for --mode sc and tot
    max_new_tokens: int = 64  # reply length limit for gen/cot/sc/tot
    tot_beam: int = 2  # --mode tot: states kept per level (beam width b)
    tot_depth: int = 3  # --mode tot: levels of thoughts (one line each) before the best state is finished (d)
    tot_branch: int = 3  # --mode tot: thoughts sampled per state, at --temperature (k)
    tot_step_tokens: int = 32  # --mode tot: longest thought in tokens (a thought also ends at a line break)
    tot_value: Literal["auto", "verifier", "self"] = "auto"  # --mode tot: state value: verifier (the calculator rechecks the reply's equations), self (the model's P(yes) that the reasoning is right), auto (verifier for numeric answers)
    limit: int | None = None  # score only the first N test items of each task (None: all)
    bpb_tokens: int = 32768  # val tokens scored by the bpb task
    bpb_window: int | None = None  # tokens of context per bpb window (default: the model's context, at most 2048)
    shards: tuple[Path, ...] = ()  # shard folders for bpb (default: the run's 'shards' beside the stage); each result is keyed bpb/<folder name>
    seed: int = 0  # task order and sampling seed
    batch_size: int = 64  # rows per forward pass (generation, bpb)
    out: Path | None = None  # results file to merge into (default: <stage>/eval.json)


@dataclass
class Loaded:
    """The model under evaluation, with what every task shares (the engine is built once, on first use)."""

    model: torch.nn.Module
    tok: TokenizerLike
    stage: Path
    is_rm: bool
    fmt: str
    dtype: torch.dtype | None = None  # autocast dtype of every forward pass
    engine: Engine | None = None


def item_ids(items: list[Item]) -> list[str]:
    """One id per test item, '<index>-<hash of its conversation>': two evaluations (base and sft)
    pair their per-item scores on equal ids, so a different --seed or task version pairs nothing."""
    return [f"{i}-{hashlib.sha1(json.dumps(it.messages, sort_keys=True, default=str).encode()).hexdigest()[:10]}"
            for i, it in enumerate(items)]


def score_items(cfg: EvalConfig, m: Loaded, task: Task, items: list[Item]) -> tuple[dict, str]:
    """(record, mode) of one task's items, by the mode the model and task call for. Task records
    keep each item's 0/1 score in "per_item" ({"id": [...], "correct": [...]}), so the report can
    judge sft against base on the same items with a paired interval."""
    mode = cfg.mode
    if m.is_rm:
        scorer = RewardScorer.from_trunk(m.model, m.tok, m.stage)
        return rm_accuracy(scorer, task_pairs(task, items)), "rm"
    if mode in ("auto", "mc") and items[0].choices:
        shots = item_shots(task, items, cfg.shots, cfg.shot_pick, cfg.seed)
        mc = [mc_item(m.tok, task, it, s, m.fmt) for it, s in zip(items, shots)]
        rec = score_multiple_choice(m.model, mc, progress=True)
        rec["format"] = m.fmt
        rec["per_item"] = {"id": item_ids(items), "correct": rec.pop("item_correct")}
        return rec, "mc"
    if mode == "mc":
        raise InputError(None, f"task {task.name!r} has no choices: use --mode gen, cot or sc")
    mode = "gen" if mode == "auto" else mode
    if m.engine is None:
        m.engine = make_engine(m.model, m.tok, max_batch=cfg.batch_size, autocast_dtype=m.dtype)
    extra: dict = {}
    if mode == "tot":
        tot = ToTConfig(cfg.tot_beam, cfg.tot_depth, cfg.tot_branch, cfg.tot_step_tokens, cfg.tot_value, cfg.temperature)
        res, extra = tot_scores(m.engine, m.tok, task, items, tot, cfg.shots, cfg.max_new_tokens, cfg.seed,
                                progress=True, shot_pick=cfg.shot_pick)
    else:
        res = generate_scores(
            m.engine, m.tok, task, items, mode, cfg.shots, cfg.n_samples,
            cfg.temperature, cfg.max_new_tokens, cfg.seed, progress=True, shot_pick=cfg.shot_pick,
        )
    rec = summarise(res) | extra
    rec["examples"] = [
        {"answer": it.answer, "reply": r.completion[:300], "correct": r.correct}
        for it, r in zip(items[:3], res[:3])
    ]
    if mode == "sc":
        rec["n_samples"], rec["temperature"] = cfg.n_samples, cfg.temperature
    rec["per_item"] = {"id": item_ids(items), "correct": [int(r.correct) for r in res]}
    return rec, mode


def task_limit(name: str, limit: int | None) -> tuple[str, int | None]:
    """A --tasks entry as (task name, item limit): 'NAME:N' overrides --limit for that task.

    >>> task_limit("play_speaker:200", 300), task_limit("gym", 300)
    (('play_speaker', 200), ('gym', 300))
    """
    name, sep, n = name.partition(":")
    if not sep:
        return name, limit
    if not n.isdigit() or int(n) < 1:
        raise InputError(None, f"--tasks {name}:{n}: the item limit after ':' must be a whole number >= 1")
    return name, int(n)


def score_task(cfg: EvalConfig, m: Loaded, entry: str, shards: Path | None = None) -> tuple[dict, str]:
    """(record, results key) of one --tasks entry: bpb on `shards` (keyed bpb/<folder name>; the
    run's own shards are plain "bpb"), or the task's test items."""
    name, limit = task_limit(entry, cfg.limit)
    if name == "bpb":
        key = "bpb" if shards is None else f"bpb/{Path(shards).name}"
        folder = shards or m.stage.parent / "shards"
        return eval_bpb(m.model, m.tok, folder, cfg.bpb_tokens, cfg.batch_size, cfg.bpb_window), key
    task = scorable_task(name, "test", cfg.seed, extra=("bpb",))
    n = len(task) if limit is None else min(limit, len(task))
    items = [task.example(i) for i in range(n)]
    if not items:
        raise InputError(None, f"task {name!r} has no test items")
    rec, mode = score_items(cfg, m, task, items)
    rec.update(task=name, mode=mode, shots=cfg.shots, split="test")
    if cfg.shots:
        rec["shot_pick"] = cfg.shot_pick
    return rec, f"{name}/{mode}"


def evaluate(cfg: EvalConfig, stage: Path) -> dict[str, dict]:
    """Every requested task on the stage; returns {key: record}."""
    is_rm = (stage / "head.safetensors").exists()
    model, tok = load_for_inference(stage, cfg.device, cfg.tokenizer)
    fmt = cfg.format if cfg.format != "auto" else ("text" if stage.name == "base" else "chat")
    device = next(model.parameters()).device
    m = Loaded(model, tok, stage, is_rm, fmt, cfg.autocast_dtype(model))
    precast_for_autocast(model, m.dtype)
    results: dict[str, dict] = {}
    # bpb runs once per --shards folder (or on the run's own shards)
    jobs = [(e, d) for e in split_names(cfg.tasks) for d in ((cfg.shards or (None,)) if e == "bpb" else (None,))]
    for entry, shards in jobs:
        t0 = time.perf_counter()
        with autocast_context(device, m.dtype):
            rec, key = score_task(cfg, m, entry, shards)
        rec["dtype"] = "bf16" if m.dtype is not None else "fp32"
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        results[key] = rec
        print(f"{key}: " + " | ".join(f"{k} {v:.4f}" for k, v in rec.items() if isinstance(v, float)), flush=True)
    return results


def run(cfg: EvalConfig) -> int:
    stage = cfg.from_ or run_dir(cfg.run, "sft")
    for flag, v, lo in (("--limit", cfg.limit, 1), ("--shots", cfg.shots, 0), ("--n-samples", cfg.n_samples, 1),
                        ("--tot-beam", cfg.tot_beam, 1), ("--tot-depth", cfg.tot_depth, 1),
                        ("--tot-branch", cfg.tot_branch, 1), ("--tot-step-tokens", cfg.tot_step_tokens, 1)):
        if v is not None and v < lo:
            raise InputError(None, f"{flag} must be >= {lo}, got {v}")
    results = evaluate(cfg, stage)
    out = cfg.out or stage / EVAL_FILE
    meta: dict[str, Any] = {"stage": stage.name, "model": str(stage), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "metadata": run_metadata(cfg.device)}
    merge_results(out, results, meta)
    print(f"wrote {len(results)} result(s) -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(EvalConfig, argv, "gptlab eval"))

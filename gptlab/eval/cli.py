"""`gptlab eval`: score a stage folder on held-out tasks; results merge into `<stage>/eval.json`.

    gptlab eval --from runs/tiny/base --tasks bpb play_speaker --limit 100       # base: text format
    gptlab eval --from runs/tiny/sft --tasks play_speaker arithmetic --limit 50
    gptlab eval --from runs/tiny/sft --tasks arithmetic --mode sc --n-samples 5 --limit 20
    gptlab eval --from runs/tiny/rm --tasks play_speaker                         # reward model: pairs
    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl --task arithmetic --judge rule

Task names: `bpb` (bits per byte, perplexity and the unigram baseline on the run's val shards) and
every scorable task of `gptlab.eval.tasks`, always on its *test* split (disjoint from what SFT
and RL train on, by construction). Modes: `mc` (log-likelihood of each choice: acc, acc_norm,
random baseline, centred accuracy), `gen` / `cot` / `sc` (see `gptlab.eval.generative`); `auto`
picks mc for tasks with choices and gen otherwise. A folder holding a reward model
(`head.safetensors`) is scored on (right, wrong) reply pairs built from the task: pairwise
accuracy and classifier metrics (`gptlab.eval.judge.rm_accuracy`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from gptlab.errors import InputError

EVAL_FILE = "eval.json"
MODES = ("auto", "mc", "gen", "cot", "sc")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab eval",
        description="Evaluate a stage folder (base, sft, rl, rm) on held-out tasks; results merge into "
        "<stage>/eval.json, keyed by task and mode. `gptlab eval judge --help`: model A vs model B; `gptlab eval diversity --help`: "
        "entropy and distinct-n of samples from several stages (mode collapse).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", default="tiny", help="run name: --from defaults to runs/<run>/sft")
    p.add_argument("--from", dest="stage", type=Path, help="stage folder to evaluate (default: runs/<run>/sft)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the stage's sibling 'tokenizer')")
    p.add_argument("--tasks", nargs="+", default=["bpb", "play_speaker", "arithmetic"],
                   help="tasks to run: bpb and/or task names (comma- or space-separated)")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="mc: log-likelihood of each choice; gen: greedy reply + exact match; cot: with "
                   "\"Let's think step by step.\"; sc: self-consistency over --n-samples; auto: mc if the task has choices")
    p.add_argument("--shots", type=int, default=0, help="few-shot examples from the task's train split")
    p.add_argument("--format", dest="fmt", choices=("auto", "chat", "text"), default="auto",
                   help="multiple-choice prompt format: chat template, or plain 'Question:/Answer:' text "
                   "for base models; auto: text for a folder named 'base', chat otherwise")
    p.add_argument("--n-samples", type=int, default=5, help="samples per question for --mode sc")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature for --mode sc")
    p.add_argument("--max-new-tokens", type=int, default=64, help="reply length limit for gen/cot/sc")
    p.add_argument("--limit", type=int, help="score only the first N test items of each task (default: all)")
    p.add_argument("--bpb-tokens", type=int, default=32768, help="val tokens scored by the bpb task")
    p.add_argument("--shards", type=Path, help="shard folder for bpb (default: the run's 'shards' beside the stage)")
    p.add_argument("--seed", type=int, default=0, help="task order and sampling seed")
    p.add_argument("--batch-size", type=int, default=16, help="rows per forward pass (generation, bpb)")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    p.add_argument("--out", type=Path, help="results file to merge into (default: <stage>/eval.json)")
    return p


def _task_names(values: list[str]) -> list[str]:
    return [t for v in values for t in v.split(",") if t]


def merge_results(path: Path, results: dict[str, dict], meta: dict[str, Any]) -> dict:
    """Merge `results` (key -> record) into the JSON file at `path`, atomically; returns the whole."""
    from gptlab.fileio import atomic_write_json, read_json

    data = read_json(path) if path.exists() else {}
    if not isinstance(data.get("results"), dict):  # keep what the stage itself wrote beside it
        data["results"] = {}
    data.update(meta)
    data["results"].update(results)
    atomic_write_json(path, data)
    return data


def read_eval(folder: Path) -> dict[str, dict]:
    """The `results` of `<folder>/eval.json`, or {} when there is none."""
    path = Path(folder) / EVAL_FILE
    if not path.exists():
        return {}
    from gptlab.fileio import read_json

    return read_json(path).get("results", {})


def eval_bpb(model, tok, shards: Path, n_tokens: int, batch_size: int) -> dict:
    """bits_per_byte on the first `n_tokens` val tokens, next to the unigram baseline from train."""
    import numpy as np

    from gptlab.data.shards import ShardIndex
    from gptlab.eval.bpb import bits_per_byte, unigram_bpb

    index = ShardIndex.load(shards)
    if index.vocab_size > model.config.vocab_size:
        raise InputError(shards / "index.json", f"vocab_size {index.vocab_size} exceeds the model's")
    val = np.concatenate(index.arrays("val"))[:n_tokens].astype(np.int64)
    train = np.concatenate(index.arrays("train")).astype(np.int64)
    lengths = tok.token_byte_lengths()
    out = bits_per_byte(model, val, lengths, batch_size=batch_size, progress=True)
    uni = unigram_bpb(train, val, lengths, model.config.vocab_size)
    out.update(unigram_bpb=uni["bpb"], unigram_ppl=uni["ppl"], source=str(shards))
    return out


def _build_task(name: str, seed: int):
    from gptlab.eval.tasks import TASKS, get_task

    if name not in TASKS:
        raise InputError(None, f"unknown task {name!r}: choose from bpb, {', '.join(TASKS)}")
    task = get_task(name, "test", seed=seed)
    if not task.scorable:
        raise InputError(None, f"task {name!r} only feeds SFT: it has no answers to score")
    return task


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Every requested task on the stage; returns {key: record}."""
    from gptlab.infer.loading import load_for_inference

    stage: Path = args.stage
    is_rm = (stage / "head.safetensors").exists()
    model, tok = load_for_inference(stage, args.device, args.tokenizer)
    fmt = args.fmt if args.fmt != "auto" else ("text" if stage.name == "base" else "chat")
    results: dict[str, dict] = {}
    engine = None
    for name in _task_names(args.tasks):
        t0 = time.perf_counter()
        if name == "bpb":
            shards = args.shards or stage.parent / "shards"
            rec = eval_bpb(model, tok, shards, args.bpb_tokens, args.batch_size)
            key = "bpb"
        else:
            task = _build_task(name, args.seed)
            n = len(task) if args.limit is None else min(args.limit, len(task))
            items = [task.example(i) for i in range(n)]
            if not items:
                raise InputError(None, f"task {name!r} has no test items")
            mode = args.mode
            if is_rm:
                from gptlab.eval.judge import RewardScorer, rm_accuracy, task_pairs

                scorer = RewardScorer.from_trunk(model, tok, stage)
                rec, mode = rm_accuracy(scorer, task_pairs(task, items)), "rm"
            elif mode in ("auto", "mc") and items[0].choices:
                from gptlab.eval.generative import mc_item, shot_messages
                from gptlab.eval.multiple_choice import score_multiple_choice

                shots = shot_messages(task, args.shots)
                mc = [mc_item(tok, task, it, shots, fmt) for it in items]
                rec, mode = score_multiple_choice(model, mc, progress=True), "mc"
                rec["format"] = fmt
            elif mode == "mc":
                raise InputError(None, f"task {name!r} has no choices: use --mode gen, cot or sc")
            else:
                from gptlab.eval.generative import generate_scores, summarise
                from gptlab.infer.loading import make_engine

                mode = "gen" if mode == "auto" else mode
                if engine is None:
                    engine = make_engine(model, tok, max_batch=args.batch_size)
                res = generate_scores(
                    model, engine, tok, task, items, mode, args.shots, args.n_samples,
                    args.temperature, args.max_new_tokens, args.seed, progress=True,
                )
                rec = summarise(res)
                rec["examples"] = [
                    {"answer": it.answer, "reply": r.completion[:300], "correct": r.correct}
                    for it, r in zip(items[:3], res[:3])
                ]
                if mode == "sc":
                    rec["n_samples"] = args.n_samples
            key = f"{name}/{mode}"
            rec.update(task=name, mode=mode, shots=args.shots, split="test")
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        results[key] = rec
        print(f"{key}: " + " | ".join(f"{k} {v:.4f}" for k, v in rec.items() if isinstance(v, float)), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "judge":
        from gptlab.eval.judge import main as judge_main

        return judge_main(argv[1:])
    if argv and argv[0] == "diversity":
        from gptlab.eval.diversity import diversity_main

        return diversity_main(argv[1:])
    args = build_parser().parse_args(argv)
    from gptlab.common import run_dir, run_metadata

    args.stage = args.stage or run_dir(args.run, "sft")
    for flag, v, lo in (("--limit", args.limit, 1), ("--shots", args.shots, 0), ("--n-samples", args.n_samples, 1)):
        if v is not None and v < lo:
            raise InputError(None, f"{flag} must be >= {lo}, got {v}")
    results = run(args)
    out = args.out or args.stage / EVAL_FILE
    meta = {"stage": args.stage.name, "model": str(args.stage), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "metadata": run_metadata(args.device)}
    merge_results(out, results, meta)
    print(f"wrote {len(results)} result(s) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

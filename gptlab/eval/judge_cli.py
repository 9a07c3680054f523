"""`gptlab eval judge`: model A vs model B on the same held-out prompts; writes arena votes.

    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl --task arithmetic --judge rule
    gptlab eval judge --a runs/tiny/base --b runs/tiny/sft --task play_speaker --judge rm --rm runs/tiny/rm
    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl --task play_title --judge model \\
        --judge-model runs/tiny/sft --rubric rubric.txt
    gptlab arena runs/tiny/judge/votes.jsonl                     # votes -> Elo leaderboard

How the judges work, and why every pair is judged in both orders: `gptlab.eval.judge`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gptlab.commandline import parse
from gptlab.errors import InputError
from gptlab.eval.judge import (
    DEFAULT_RUBRIC,
    Prefer,
    RewardScorer,
    judge_all,
    model_judge,
    rm_judge,
    rule_judge,
)
from gptlab.fileio import atomic_write_text
from gptlab.infer.loading import load_for_inference, make_engine
from gptlab.options import DeviceArgs
from gptlab.tasks import Item, Task, scorable_task
from gptlab.tasks.base import reply_text


@dataclass(kw_only=True)
class JudgeConfig(DeviceArgs):
    """Model A vs model B on the same held-out prompts, judged in both orders by a rule (the
    task's reward), a reward model or a judge model with a rubric; writes arena votes (JSONL)."""

    a: Path  # stage folder of model A
    b: Path  # stage folder of model B
    name_a: str | None = None  # model A's name in the votes (default: its folder name)
    name_b: str | None = None  # model B's name in the votes (default: its folder name)
    task: str = "arithmetic"  # the one task whose test prompts both models answer
    judge: Literal["rule", "rm", "model"] = "rule"  # rule: the task's reward; rm: a reward model (--rm); model: a judge model (--judge-model)
    rm: Path | None = None  # reward-model folder for --judge rm (default: runs/<run of A>/rm)
    judge_model: Path | None = None  # chat model folder for --judge model
    rubric: Path | None = None  # text file with the judge model's rubric (default: a built-in one)
    limit: int = 50  # number of test prompts
    max_new_tokens: int = 64  # reply length limit
    seed: int = 0  # task order
    out: Path | None = None  # votes JSONL (default: runs/<run of A>/judge/votes.jsonl)
    append: bool = False  # add to --out instead of replacing it


def replies(folder: Path, prompts: list[list[dict]], max_new: int, device: str) -> list[str]:
    """The greedy reply of the model in `folder` to each prompt, as text."""
    model, tok = load_for_inference(folder, device)
    engine = make_engine(model, tok)
    outs = engine.generate_all([tok.render_prompt(p) for p in prompts], max_new, temperature=0.0)
    return [reply_text(tok.parse_assistant(ids)) for ids in outs]


def make_judge(cfg: JudgeConfig, task: Task, prompts: list[list[dict]], items: list[Item]) -> Prefer:
    """The judge `--judge` names, ready to compare two replies to one of `prompts`."""
    if cfg.judge == "rule":
        by_prompt = {json.dumps(p): it for p, it in zip(prompts, items)}
        return rule_judge(task, lambda p: by_prompt[json.dumps(p)])
    if cfg.judge == "rm":
        return rm_judge(RewardScorer.load(cfg.rm or cfg.a.parent / "rm", cfg.device))
    if cfg.judge_model is None:
        raise InputError(None, "--judge model needs --judge-model FOLDER")
    jm, jtok = load_for_inference(cfg.judge_model, cfg.device)
    if cfg.rubric is not None and not cfg.rubric.is_file():
        raise InputError(cfg.rubric, "file not found")
    rubric = cfg.rubric.read_text(encoding="utf-8").strip() if cfg.rubric else DEFAULT_RUBRIC
    return model_judge(jm, jtok, rubric)


def run(cfg: JudgeConfig) -> int:
    if cfg.limit < 1:
        raise InputError(None, f"--limit must be >= 1, got {cfg.limit}")
    task = scorable_task(cfg.task, "test", cfg.seed)
    items = [task.example(i) for i in range(min(cfg.limit, len(task)))]
    prompts = [task.prompt(it) for it in items]
    replies_a = replies(cfg.a, prompts, cfg.max_new_tokens, cfg.device)
    replies_b = replies(cfg.b, prompts, cfg.max_new_tokens, cfg.device)
    prefer = make_judge(cfg, task, prompts, items)
    name_a, name_b = cfg.name_a or cfg.a.name, cfg.name_b or cfg.b.name
    if name_a == name_b:
        raise InputError(None, f"both models are named {name_a!r}: pass --name-a / --name-b")
    votes, summary = judge_all(prefer, prompts, replies_a, replies_b, name_a, name_b, cfg.judge)
    out = cfg.out or cfg.a.parent / "judge" / "votes.jsonl"
    old = out.read_text(encoding="utf-8") if cfg.append and out.exists() else ""
    atomic_write_text(out, old + "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in votes))
    s = summary.as_dict()
    print(f"{name_a} vs {name_b} on {task.name} ({cfg.judge} judge): {name_a} {s['wins_a']}, "
          f"{name_b} {s['wins_b']}, ties {s['ties']} | {name_b} win rate {s['win_rate_b']:.1%} | "
          f"orders agree {s['consistent']:.0%} -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(JudgeConfig, argv, "gptlab eval judge"))

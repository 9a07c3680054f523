"""`gptlab eval judge`: model A vs model B on the same held-out prompts; writes arena votes.

    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl --task arithmetic --judge rule rm  # one set of replies, two judges
    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl runs/tiny/grpo --judge rule  # A's replies made once for both
    gptlab eval judge --a runs/tiny/base --b runs/tiny/sft --task play_speaker --judge rm --rm runs/tiny/rm
    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl --task play_title --judge model \\
        --judge-model runs/tiny/sft --rubric rubric.txt
    gptlab eval judge --a runs/tiny/sft --b runs/tiny/rl --prompts chats.txt --judge rm  # open prompts, no checker
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
    same_words,
)
from gptlab.eval.prompts import read_prompts
from gptlab.eval.results import EVAL_FILE, merge_results
from gptlab.fileio import atomic_write_text
from gptlab.infer.loading import load_for_inference, make_engine, precast_for_autocast
from gptlab.options import InferenceArgs
from gptlab.tasks import Item, Task, scorable_task
from gptlab.tasks.base import reply_text


@dataclass(kw_only=True)
class JudgeConfig(InferenceArgs):
    """Model A vs model B on the same held-out prompts, judged in both orders by a rule (the
    task's reward), a reward model or a judge model with a rubric; writes arena votes (JSONL) and
    B's win rate (95% CI, reply lengths, and again with both replies cut to the same length) into
    B's eval.json as judge/<task>/<judge>."""

    a: Path  # stage folder of model A
    b: tuple[Path, ...]  # stage folder of model B (several: each against A, whose replies are made once)
    name_a: str | None = None  # model A's name in the votes (default: its folder name)
    name_b: str | None = None  # model B's name in the votes, with one --b (default: its folder name)
    task: str = "arithmetic"  # the one task whose test prompts both models answer
    judge: tuple[Literal["rule", "rm", "model"], ...] = ("rule",)  # judges of the same replies: rule (the task's reward), rm (a reward model, --rm), model (a judge model, --judge-model)
    rm: Path | None = None  # reward-model folder for --judge rm (default: runs/<run of A>/rm)
    judge_model: Path | None = None  # chat model folder for --judge model
    rubric: Path | None = None  # text file with the judge model's rubric (default: a built-in one)
    limit: int = 50  # number of test prompts
    max_new_tokens: int = 64  # reply length limit
    seed: int = 0  # task order
    out: Path | None = None  # votes JSONL (default: runs/<run of A>/judge/votes.jsonl)
    append: bool = False  # add to --out instead of replacing it
    batch_size: int = 64  # replies generated at once
    prompts: Path | None = None  # prompts file (.txt one per line, or JSONL 'prompt') instead of --task: open prompts without a checker, for the rm and model judges; results are keyed by the file's name


def replies(cfg: JudgeConfig, folder: Path, prompts: list[list[dict]]) -> tuple[list[str], list[int]]:
    """The greedy reply of the model in `folder` to each prompt, as text, and its length in tokens."""
    model, tok = load_for_inference(folder, cfg.device)
    dtype = cfg.autocast_dtype(model)
    engine = make_engine(precast_for_autocast(model, dtype), tok, max_batch=cfg.batch_size, autocast_dtype=dtype)
    outs = engine.generate_all([tok.render_prompt(p) for p in prompts], cfg.max_new_tokens, temperature=0.0)
    return [reply_text(tok.parse_assistant(ids)) for ids in outs], [len(ids) for ids in outs]


def make_judge(cfg: JudgeConfig, name: str, task: Task | None, prompts: list[list[dict]], items: list[Item]) -> Prefer:
    """Judge `name` (one of --judge), ready to compare two replies to one of `prompts`."""
    if name == "rule":
        if task is None:
            raise InputError(cfg.prompts, "--judge rule needs a task's checker; a prompts file has none (use rm or model)")
        by_prompt = {json.dumps(p): it for p, it in zip(prompts, items)}
        return rule_judge(task, lambda p: by_prompt[json.dumps(p)])
    if name == "rm":
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
    task: Task | None = None
    if cfg.prompts is not None:  # open prompts: no items, no checker
        prompts, items, source = read_prompts(cfg.prompts)[: cfg.limit], [], cfg.prompts.stem
    else:
        task = scorable_task(cfg.task, "test", cfg.seed)
        items = [task.example(i) for i in range(min(cfg.limit, len(task)))]
        prompts, source = [task.prompt(it) for it in items], task.name
    if cfg.name_b is not None and len(cfg.b) != 1:
        raise InputError(None, "--name-b names one --b model; several are named by their folders")
    names_b = [cfg.name_b or b.name for b in cfg.b]
    name_a = cfg.name_a or cfg.a.name
    if name_a in names_b or len(set(names_b)) < len(names_b):
        raise InputError(None, f"two models are named alike ({name_a}, {', '.join(names_b)}): pass --name-a / --name-b")
    replies_a = replies(cfg, cfg.a, prompts)
    judges = {name: make_judge(cfg, name, task, prompts, items) for name in dict.fromkeys(cfg.judge)}
    out = cfg.out or cfg.a.parent / "judge" / "votes.jsonl"
    lines = out.read_text(encoding="utf-8") if cfg.append and out.exists() else ""
    for b, name_b in zip(cfg.b, names_b):
        replies_b = replies(cfg, b, prompts)
        for name, prefer in judges.items():  # each judge once, in the order given
            votes, record = judge_replies(prefer, name, prompts, replies_a, replies_b, (name_a, name_b))
            lines += "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in votes)
            record.update(task=source, vs_path=str(cfg.a))
            merge_results(b / EVAL_FILE, {f"judge/{source}/{name}": record}, {"stage": b.name, "model": str(b)})
            print_record(record, name, source, name_a, name_b)
    atomic_write_text(out, lines)
    print(f"votes -> {out}; win rates -> {', '.join(str(b / EVAL_FILE) for b in cfg.b)}")
    return 0


def print_record(record: dict, judge: str, task: str, name_a: str, name_b: str) -> None:
    m = record["matched_length"]
    print(f"{name_a} vs {name_b} on {task} ({judge} judge, both orders): {name_a} {record['wins_a']}, "
          f"{name_b} {record['wins_b']}, ties {record['ties']} | {name_b} win rate {record['win_rate_b']:.1%} "
          f"(95% CI {record['ci95'][0]:.1%} to {record['ci95'][1]:.1%}), at matched length "
          f"{m['win_rate_b']:.1%} (95% CI {m['ci95'][0]:.1%} to {m['ci95'][1]:.1%}) | reply tokens "
          f"{record['reply_tokens_a']:.1f} -> {record['reply_tokens_b']:.1f} | orders agree "
          f"{record['consistent']:.0%}", flush=True)


def judge_replies(prefer: Prefer, judge: str, prompts: list[list[dict]], a: tuple[list[str], list[int]],
                  b: tuple[list[str], list[int]], names: tuple[str, str]) -> tuple[list[dict], dict]:
    """(votes, record) of one judge on the replies (texts, token counts) of A and B: B's win rate
    over both orders, and again with both replies cut to the shorter one's words (the gain that
    length cannot explain)."""
    (replies_a, len_a), (replies_b, len_b) = a, b
    votes, summary = judge_all(prefer, prompts, replies_a, replies_b, *names, judge)
    cut = [same_words(x, y) for x, y in zip(replies_a, replies_b)]
    _, matched = judge_all(prefer, prompts, [x for x, _ in cut], [y for _, y in cut], *names, judge)
    s, m = summary.as_dict(), matched.as_dict()
    record = {**s, "mode": "judge", "judge": judge, "vs": names[0],
              "reply_tokens_a": sum(len_a) / len(len_a), "reply_tokens_b": sum(len_b) / len(len_b),
              "matched_length": {k: m[k] for k in ("win_rate_b", "ci95", "wins_a", "wins_b", "ties")}}
    return votes, record


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(JudgeConfig, argv, "gptlab eval judge"))

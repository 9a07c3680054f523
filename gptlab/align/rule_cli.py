"""`gptlab rank rule`: K sampled answers per task prompt, ranked by the task's own reward."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gptlab.align.options import SamplingOptions
from gptlab.align.rankers import rule_rankings
from gptlab.commandline import parse
from gptlab.data.preferences import save_rankings
from gptlab.tasks import get_task, task_names


@dataclass
class RuleConfig(SamplingOptions):
    """Rank K sampled answers per task prompt (train split) by the task's reward; writes
    runs/<run>/rankings/rule.jsonl."""

    tasks: tuple[str, ...] = ("arithmetic", "play_speaker")  # task names (gptlab.tasks), each with a verifier
    n: int = 200  # prompts per task (from the train split)
    reference: bool = False  # rank the task's reference reply among the K samples (a signal even when all K are wrong)
    by: Literal["reward", "correct"] = "reward"  # reward: the task's graded reward; correct: its pass/fail verdict only (no pairs between two wrong answers)
    missing_eos_penalty: float | None = None  # taken off the score of an answer the token budget cut, so it ranks below one that ended its turn


def run(cfg: RuleConfig) -> int:
    names = task_names(cfg.tasks, scorable=True)  # checked before any model loads
    engine, tok = cfg.engine()
    rankings = []
    for t in names:
        got, stats = rule_rankings(engine, tok, get_task(t, "train"), cfg.n, cfg.k, reference=cfg.reference,
                                   by=cfg.by, missing_eos_penalty=cfg.missing_eos_penalty, **cfg.sampling())
        print(f"{t}: {stats['prompts']} prompts, {stats['prompts_with_signal']} with a winner, "
              f"{stats['pairs']} pairs, mean reward {stats['mean_reward']:.3f}, {stats['cut']} answers cut by the budget")
        rankings += got
    out = cfg.output("rule.jsonl")
    save_rankings(out, rankings)
    print(f"{len(rankings)} rankings -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(RuleConfig, argv, "gptlab rank rule"))

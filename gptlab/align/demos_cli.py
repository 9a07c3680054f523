"""`gptlab rank demos`: a person's written reply ranked above the model's samples, each cut within
the shorter (see `gptlab.align.demos` for why)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gptlab.align.demos import demo_rankings
from gptlab.align.options import SamplingOptions
from gptlab.commandline import parse
from gptlab.data.preferences import save_rankings
from gptlab.tasks import get_task, task_names


@dataclass
class DemosConfig(SamplingOptions):
    """Rank a person's written reply above the model's samples, each cut within the shorter. Each
    pair is cut at a word boundary to its own random 50-100% of the shorter reply, so neither
    length nor a cut-off ending tells the two apart. Writes runs/<run>/rankings/demos.jsonl."""

    tasks: tuple[str, ...] = ("chitchat",)  # tasks with written replies (chitchat, continue_speech, ...), train split
    n: int = 400  # prompts per task


def run(cfg: DemosConfig) -> int:
    names = task_names(cfg.tasks)  # checked before any model loads
    engine, tok = cfg.engine()
    rankings = []
    for t in names:
        got, stats = demo_rankings(engine, tok, get_task(t, "train"), cfg.n, cfg.k, **cfg.sampling())
        print(f"{t}: {stats['prompts']} prompts, {stats['pairs']} pairs ({stats['skipped']} samples skipped: "
              "a tool call, or under 3 words once cut)")
        rankings += got
    out = cfg.output("demos.jsonl")
    save_rankings(out, rankings)
    print(f"{len(rankings)} rankings -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(DemosConfig, argv, "gptlab rank demos"))

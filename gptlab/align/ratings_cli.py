"""`gptlab rank ratings`: chitchat chats on one opening topic, ranked by their 1-10 ratings (see
`gptlab.align.ratings`). No model is involved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gptlab.align.options import RankOutput
from gptlab.align.ratings import ratings_rankings
from gptlab.commandline import parse
from gptlab.data.corpora import load_chats
from gptlab.data.preferences import save_rankings
from gptlab.errors import InputError


@dataclass
class RatingsConfig(RankOutput):
    """Rank chitchat chats on one opening topic by their 1-10 ratings; writes
    runs/<run>/rankings/ratings.jsonl."""

    k: int = 4  # chats per ranking
    n: int = 300  # rankings to make
    max_chars: int = 600  # each chat's transcript is cut to this length
    keep_default: bool = False  # keep 5/5/5 ratings (the form's untouched default)
    min_gap: int = 1  # least difference between the rating sums (3-30) of two chats in a ranking
    seed: int = 0  # which chats are grouped together


def run(cfg: RatingsConfig) -> int:
    if cfg.k < 2:
        raise InputError(None, "--k must be at least 2")
    if cfg.min_gap < 1:
        raise InputError(None, "--min-gap must be at least 1")
    rankings = ratings_rankings(load_chats(), cfg.n, cfg.k, cfg.seed, cfg.max_chars,
                                skip_default=not cfg.keep_default, min_gap=cfg.min_gap)
    out = cfg.output("ratings.jsonl")
    save_rankings(out, rankings)
    print(f"{len(rankings)} rankings of {cfg.k} rated chats -> {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(RatingsConfig, argv, "gptlab rank ratings"))

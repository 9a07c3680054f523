"""`gptlab rl dpo`: DPO on the preference pairs of rankings files, the frozen reference in place of
a reward model (Rafailov et al.; the algorithm is gptlab.algos.dpo). An offline loss over pairs,
so --steps counts optimizer steps."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gptlab.algos.dpo import PreferenceBatches, heldout_preferences, make_dpo_loss, ranking_pairs
from gptlab.algos.reward_model import conversation
from gptlab.commandline import parse
from gptlab.common import print0, run_dir
from gptlab.data.preferences import Ranking, load_preferences
from gptlab.errors import InputError
from gptlab.stages.rl.common import (
    STALE,
    RLArgs,
    checkpoint_dir,
    describe,
    load_start,
    make_finish,
    train_config,
)
from gptlab.train.distributed import DistInfo
from gptlab.train.stage import StageParts, run_stage

DEFAULT_STEPS = 100


@dataclass
class DPOArgs(RLArgs):
    """DPO: loss = -log sigmoid(beta * [(log pi - log pi_ref)(chosen) - (same)(rejected)]) over all
    K(K-1)/2 pairs of each ranking. --steps counts optimizer steps. Writes the policy, eval.json
    (held-out DPO loss and preference accuracy), metrics.jsonl, rl.png and loss.png into --out
    (default runs/<run>/rl)."""

    steps: int | None = None  # the budget: optimizer steps of --batch-size pairs (default 100 unless --time-budget)
    data: tuple[Path, ...] = ()  # rankings files (default: runs/<run>/rankings/*.jsonl but candidates.jsonl)
    beta: float = 0.1  # beta of the implicit reward
    nll_coef: float = 0.0  # alpha of an NLL term on the chosen replies (RPO): keeps them, and their end-of-turn token, likely
    batch_size: int = 8  # pairs per optimizer step
    seq_len: int | None = None  # tokens per conversation (default: the model's max_seq_len)

    def check(self) -> None:
        super().check()
        if self.batch_size < 1:
            raise InputError(None, "--batch-size must be at least 1")


def rankings(cfg: DPOArgs) -> list[Ranking]:
    """The rankings of --data, or of every runs/<run>/rankings/*.jsonl but the candidates."""
    paths = list(cfg.data)
    if not paths:
        folder = run_dir(cfg.run, "rankings")
        paths = sorted(p for p in folder.glob("*.jsonl") if p.name != "candidates.jsonl") if folder.is_dir() else []
        if not paths:
            raise InputError(folder, "no rankings found: make some with `gptlab rank ...`, or give --data")
    out = []
    for path in paths:
        out += load_preferences(path)[0]
    return out


def build(cfg: DPOArgs, out: Path, dist: DistInfo) -> StageParts:
    """The policy, batches of (chosen, rejected) pairs, the DPO loss and a held-out pairs hook."""
    start = load_start(cfg, dist)
    pairs, dropped = ranking_pairs(start.tok, rankings(cfg), cfg.seq_len or start.max_seq_len, conversation)
    random.Random(f"dpo-heldout:{cfg.seed}").shuffle(pairs)
    n_eval = min(cfg.eval_prompts, len(pairs) // 5)
    held_pairs, pairs = pairs[:n_eval], pairs[n_eval:]
    print0(f"dpo: {len(pairs):,} train pairs, {len(held_pairs):,} held out ({dropped} cut off, dropped)")
    try:
        batches = PreferenceBatches(pairs, cfg.batch_size, start.pad_id, cfg.seed, start.device)
    except ValueError as e:
        raise InputError(None, str(e)) from None
    evaluate = None
    if held_pairs:
        evaluate = partial(heldout_preferences, ref=start.ref, pairs=held_pairs, beta=cfg.beta, pad_id=start.pad_id)
    train = train_config(cfg, DEFAULT_STEPS, 1, start.device)
    return StageParts(
        start.trainable(), batches, make_dpo_loss(start.ref, cfg.beta, cfg.nll_coef), train, describe("dpo", cfg, start, 1),
        evaluate=evaluate, metadata={"algo": "dpo", "init": str(start.init), "params": start.policy.num_params()},
        stale=STALE, finish=make_finish("dpo", cfg, out, train, {"from": str(start.init)}, 1,
                                       save=partial(start.save_policy, out) if start.lora else None),
    )


def run(cfg: DPOArgs) -> int:
    out = Path(cfg.out or run_dir(cfg.run, "rl"))
    run_stage(cfg, "rl dpo", out, lambda dist, resuming: build(cfg, out, dist), checkpoint_dir=checkpoint_dir(cfg, out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(DPOArgs, argv, "gptlab rl dpo"))

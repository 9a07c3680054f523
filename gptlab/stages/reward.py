"""`gptlab reward train|eval`: the reward model, trained on rankings with the Bradley-Terry loss.

The model, its batches, loss and scoring live in gptlab.algos.reward_model, the held-out report
in gptlab.eval.reward_pairs; this module is the two commands: `train` goes through the one loop
(gptlab.train.stage.run_stage), `eval` scores held-out rankings with a saved model.

    gptlab reward train --from runs/tiny/sft --data runs/tiny/rankings/rule.jsonl \\
        runs/tiny/rankings/ratings.jsonl                    # -> runs/tiny/rm
    gptlab reward eval --from runs/tiny/rm                  # held-out pairs -> runs/tiny/rm/eval.json

Output folder: model.safetensors + config.json (the trunk: a plain GPT checkpoint), head.safetensors,
reward_config.json, heldout.jsonl (the rankings kept out of training), eval.json, run.yaml,
metrics.jsonl, loss.png; the resumable training checkpoint (trunk + head + optimizer +
train_state.json) lives in `<out>/checkpoint/`.

`reward eval` must beat two baselines before anyone trusts the model with RL: a coin (50%) and
"the longer answer wins" (answer length is the classic reward-model shortcut), by more than the
held-out sample's noise: it reports a 95% bootstrap interval of the margin, resampling rankings.

Small-budget habits: the head starts at zero, so it gets its own, higher learning rate
(`--head-lr`); `--max-tokens` reads only the end of each conversation (the reply and the turns just
before it), which cuts the cost of a step more than it cuts what the model can see.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from gptlab.algos.reward_model import (
    PairBatches,
    RewardModel,
    bt_loss,
    encode,
    load_reward_model,
    prompt_key,
    score_all,
    split_heldout,
)
from gptlab.commandline import dispatch, parse
from gptlab.common import pick_device, run_dir
from gptlab.data.preferences import Ranking, load_preferences, save_rankings
from gptlab.errors import InputError
from gptlab.eval.reward_pairs import evaluate_folder, pair_report
from gptlab.fileio import atomic_write_json
from gptlab.model.io import load_model, save_model
from gptlab.model.lora import load_model_with_adapter
from gptlab.options import DeviceArgs, FromPath, RunArgs
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.train import checkpoint
from gptlab.train.distributed import DistInfo
from gptlab.train.loop import TrainResult
from gptlab.train.stage import LoopArgs, StageParts, run_stage

HELDOUT = "heldout.jsonl"
DEFAULT_STEPS = 150


@dataclass
class RewardTrainConfig(LoopArgs):
    """Initialise from the SFT model, add a scalar head at <|reward|>, train on all pairs of each
    ranking. Writes into --out (default runs/<run>/rm); its checkpoint lives in <out>/checkpoint."""

    from_: FromPath = None  # SFT folder (full weights or LoRA adapter; default: runs/<run>/sft)
    tokenizer: Path | None = None  # tokenizer folder (default: the --from folder's sibling 'tokenizer')
    data: tuple[Path, ...] = ()  # rankings files: ranked lists or prompt/chosen/rejected JSONL, space-separated (default: every runs/<run>/rankings/*.jsonl except candidates.jsonl)
    val_frac: float = 0.15  # fraction of prompts (or rankings) held out for eval
    split_by: Literal["prompt", "ranking"] = "prompt"  # held-out unit: whole prompts (strictest), or rankings (unseen answers to seen prompts; for data with few distinct prompts)
    steps: int | None = DEFAULT_STEPS  # optimizer steps, the budget
    batch_pairs: int = 32  # a batch takes whole prompts until it has this many pairs
    lr: float = 1e-4  # peak learning rate (trunk)
    head_lr: float = 3e-3  # peak learning rate of the scalar head (zero-initialised: it must move far in few steps)
    max_tokens: int | None = None  # read at most the last N tokens of each conversation (BOS kept; default: the model's context). Shorter windows train faster; the saved model is read the same way
    warmup: int = 10  # linear LR warmup, optimizer steps
    weight_decay: float = 0.0  # decoupled weight decay on matrices
    eval_every: int | None = 50  # held-out pair accuracy every N steps, and at 0 and the end (None: off)
    save_every: int | None = None  # checkpoint every N steps (None: only at the end)
    log_every: int = 10  # progress line + metrics.jsonl record every N steps
    seed: int = 1337  # seeds the held-out split and the batch order


@dataclass
class RewardEvalConfig(RunArgs, DeviceArgs):
    """Held-out pairwise accuracy, ROC AUC and the coin / longer-wins baselines -> eval.json."""

    from_: FromPath = None  # reward-model folder (default: runs/<run>/rm)
    data: tuple[Path, ...] = ()  # held-out rankings files, space-separated (default: <from>/heldout.jsonl)
    tokenizer: Path | None = None  # tokenizer folder (default: the reward-model folder's sibling 'tokenizer')
    out: Path | None = None  # report file (default: <from>/eval.json)


def load_data(paths: Sequence[Path]) -> list[Ranking]:
    """Every file's rankings, in order, with a count line per file."""
    out: list[Ranking] = []
    for path in paths:
        got, counts = load_preferences(path)
        print(f"data: {path}: {counts['kept']} rankings, {counts['pairs']} pairs")
        out += got
    return out


def default_data(run: str) -> list[Path]:
    """runs/<run>/rankings/*.jsonl but candidates.jsonl and empty files; an error if none is left."""
    folder = run_dir(run, "rankings")
    paths = sorted(p for p in folder.glob("*.jsonl") if p.name != "candidates.jsonl") if folder.is_dir() else []
    empty = [p for p in paths if p.stat().st_size == 0]
    for p in empty:  # e.g. a rule ranking where every sampled answer scored the same
        print(f"data: {p}: empty (no rankings), skipped")
    paths = [p for p in paths if p not in empty]
    if not paths:
        raise InputError(folder, "no rankings found: make some with `gptlab rank rule|ratings|label`, or give --data")
    return paths


def load_trunk(folder: Path) -> torch.nn.Module:
    """The SFT model to start from, trainable: full weights, or a LoRA adapter merged into its base."""
    if (folder / "adapter_config.json").exists():
        trunk = load_model_with_adapter(folder, merge=True)  # frozen and in eval mode: undo both
        for p in trunk.parameters():
            p.requires_grad_(True)
        return trunk.train()
    return load_model(folder)


def print_report(rep: dict[str, Any]) -> None:
    """The report's verdict in one line, and one line per source."""
    if not rep.get("pairs"):
        print("no held-out pairs to evaluate")
        return
    lo, hi = rep["margin_ci95"]
    verdict = "yes, clearly" if rep["clearly_beats_baselines"] else "yes, but within noise" if rep["beats_baselines"] else "NO"
    print(f"held-out: {rep['pairs']} pairs | accuracy {rep['accuracy']:.3f} | ROC AUC {rep['roc_auc']:.3f} | "
          f"baselines: random 0.500, longer-wins {rep['longer_wins_baseline']:.3f} | "
          f"margin {rep['margin_over_best_baseline']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}) | beats both: {verdict}")
    for src, s in rep.get("by_source", {}).items():
        if s.get("pairs"):
            print(f"  {src}: {s['pairs']} pairs | accuracy {s['accuracy']:.3f} | AUC {s['roc_auc']:.3f} | "
                  f"longer-wins {s['longer_wins_baseline']:.3f} | margin {s['margin_over_best_baseline']:+.3f} "
                  f"(95% CI {s['margin_ci95'][0]:+.3f} to {s['margin_ci95'][1]:+.3f})")


@dataclass
class TrainInputs:
    """What `reward train` resolves before the loop starts: folders and the split rankings."""

    init: Path
    tok_dir: Path
    out: Path
    paths: list[Path]
    train: list[Ranking]
    held: list[Ranking]


def build(cfg: RewardTrainConfig, inp: TrainInputs, dist: DistInfo, report: dict[str, Any]) -> StageParts:
    """The reward model from the SFT folder, whole-prompt pair batches, the BT loss and the
    held-out accuracy hook; `finish` saves the model and writes eval.json (its report into `report`)."""
    tok = load_tokenizer(inp.tok_dir)
    model = RewardModel(load_trunk(inp.init))
    max_len, pad_id = min(cfg.max_tokens or model.config.max_seq_len, model.config.max_seq_len), tok.pad_id
    model.max_tokens = max_len
    encoded = [(prompt_key(r), encode(tok, r, max_len), r.pairs()) for r in inp.train]
    try:
        batches = PairBatches(encoded, cfg.batch_pairs, pad_id, cfg.seed, dist.rank, dist.world_size, dist.device)
    except ValueError as e:
        raise InputError(None, str(e)) from None
    describe = (f"reward model: {model.trunk.num_params() / 1e6:.2f}M params from {inp.init} | train {len(inp.train)} "
                f"rankings ({sum(len(p) for _, _, p in encoded)} pairs, {len(batches.groups)} prompts) | "
                f"held out {len(inp.held)}")
    held, held_enc = inp.held, [encode(tok, r, max_len) for r in inp.held]

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        rep = pair_report(held, score_all(m, held_enc, pad_id))
        return {"val_pair_acc": rep["accuracy"], "val_auc": rep["roc_auc"]} if rep.get("pairs") else {}

    train = cfg.loop_config(DEFAULT_STEPS, head_lr=cfg.head_lr, eval_every=cfg.eval_every if held else None)
    if dist.is_main:
        inp.out.mkdir(parents=True, exist_ok=True)
        save_rankings(inp.out / HELDOUT, held)

    def finish(result: TrainResult) -> str:
        model.eval()
        save_model(inp.out, model.trunk)
        model.save_head(inp.out)
        atomic_write_json(inp.out / "reward_config.json", {
            "init": str(inp.init), "train": asdict(train), "data": [str(p) for p in inp.paths],
            "train_rankings": len(inp.train), "heldout_rankings": len(held), "max_tokens": max_len})
        report.update(pair_report(held, score_all(model, held_enc, pad_id)) if held else {"pairs": 0})
        atomic_write_json(inp.out / "eval.json", {"data": str(inp.out / HELDOUT), **report})
        return ""

    return StageParts(model, batches, bt_loss, train, describe, evaluate=evaluate,
                      stale=("metrics.jsonl", "loss.png"), finish=finish)


def run_train(cfg: RewardTrainConfig) -> int:
    init = Path(cfg.from_ or run_dir(cfg.run, "sft"))
    out = Path(cfg.out or run_dir(cfg.run, "rm"))
    tok_dir = Path(cfg.tokenizer or init.parent / "tokenizer")
    if not tok_dir.exists():
        raise InputError(tok_dir, "tokenizer folder not found (give --tokenizer)")
    if not init.is_dir():
        raise InputError(init, "SFT folder not found (give --from)")
    if not 0 <= cfg.val_frac < 1:
        raise InputError(None, "--val-frac must be in [0, 1)")
    paths = list(cfg.data) or default_data(cfg.run)
    rankings = load_data(paths)
    train_r, held = split_heldout(rankings, cfg.val_frac, cfg.seed, cfg.split_by)
    inp = TrainInputs(init, tok_dir, out, paths, train_r, held)
    report: dict[str, Any] = {}  # filled on rank 0 by `finish`
    run_stage(cfg, "reward train", out, lambda dist, resuming: build(cfg, inp, dist, report),
              checkpoint_dir=out / checkpoint.SUBFOLDER)
    if report:
        print_report(report)
    return 0


def run_eval(cfg: RewardEvalConfig) -> int:
    folder = Path(cfg.from_ or run_dir(cfg.run, "rm"))
    paths = list(cfg.data) or [folder / HELDOUT]
    rankings = load_data(paths)
    model = load_reward_model(folder, pick_device(cfg.device))
    tok = load_tokenizer(cfg.tokenizer or folder.parent / "tokenizer")
    rep = evaluate_folder(model, tok, rankings)
    out = cfg.out or folder / "eval.json"
    atomic_write_json(out, {"data": [str(p) for p in paths], **rep})
    print_report(rep)
    print(f"-> {out}")
    return 0


def main_train(argv: Sequence[str] | None = None) -> int:
    return run_train(parse(RewardTrainConfig, argv, "gptlab reward train"))


def main_eval(argv: Sequence[str] | None = None) -> int:
    return run_eval(parse(RewardEvalConfig, argv, "gptlab reward eval"))


COMMANDS = {
    "train": (main_train, "train the reward model on rankings"),
    "eval": (main_eval, "held-out pairwise accuracy, ROC AUC and baselines -> eval.json"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(COMMANDS, sys.argv[1:] if argv is None else argv, "gptlab reward")


if __name__ == "__main__":
    raise SystemExit(main())

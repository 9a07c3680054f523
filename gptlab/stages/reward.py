"""`gptlab reward train|eval`: the reward model, trained on rankings with the Bradley-Terry loss.

The model is the SFT transformer plus a zero-initialised linear head (gptlab.model.heads), read
at the `<|reward|>` token appended after the response. A ranking of K answers gives K(K-1)/2
(chosen, rejected) pairs; as in InstructGPT every pair of one prompt goes into the same batch, and
each of the K conversations is run through the model once (not once per pair), which is what
makes using all pairs cheap. Loss: mean over the batch's pairs of -log sigmoid(r_chosen - r_rejected).

    gptlab reward train --from runs/tiny/sft --data runs/tiny/rankings/rule.jsonl \\
        --data runs/tiny/rankings/ratings.jsonl            # -> runs/tiny/rm
    gptlab reward eval --rm runs/tiny/rm                    # held-out pairs -> runs/tiny/rm/eval.json

Output folder: model.safetensors + config.json (the trunk: a plain GPT checkpoint), head.safetensors,
heldout.jsonl (the rankings kept out of training), eval.json, metrics.jsonl; the resumable training
checkpoint (trunk + head + optimizer + train_state.json) lives in `<out>/checkpoint/`.

`reward eval` must beat two baselines before anyone trusts the model with RL: a coin (50%) and
"the longer answer wins" (answer length is the classic reward-model shortcut), by more than the
held-out sample's noise: it reports a 95% bootstrap interval of the margin, resampling rankings.

Small-budget habits: the head starts at zero, so it gets its own, higher learning rate
(`--head-lr`); `--max-tokens` reads only the end of each conversation (the reply and the turns just
before it), which cuts the cost of a step more than it cuts what the model can see.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gptlab.data.preferences import Ranking
from gptlab.errors import InputError
from gptlab.model.heads import ScalarHeadModel, keep_end
from gptlab.train.cli_args import HelpFormatter as _HelpFormatter

CHECKPOINT = "checkpoint"  # subfolder of --out with the resumable training state
HELDOUT = "heldout.jsonl"
LM_HEAD = "trunk.lm_head.weight"


class RewardModel(ScalarHeadModel):
    """ScalarHeadModel whose training checkpoint holds the trunk under GPT's own names (so the
    checkpoint code treats it as a GPT, tied embeddings included) plus `head.weight`/`head.bias`,
    and leaves out the LM head, which the reward model never reads."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        sd = super().state_dict(*args, **kwargs)
        out = {k.removeprefix("trunk."): v for k, v in sd.items() if k != LM_HEAD}
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):  # type: ignore[override]
        state = {(k if k.startswith("head.") else "trunk." + k): v for k, v in state_dict.items()}
        state[LM_HEAD] = self.trunk.lm_head.weight.detach()  # unused; keep what the trunk has
        return super().load_state_dict(state, strict=strict, assign=assign)


# ---------------------------------------------------------------------------- data


def conversation(r: Ranking, i: int) -> list[dict]:
    """Prompt + answer i, with the answer's message parts (tool calls) when the ranking kept them."""
    contents = r.meta.get("contents")
    content = contents[i] if isinstance(contents, list) and len(contents) == len(r.responses) else r.responses[i]
    return r.prompt + [{"role": "assistant", "content": content}]


def encode(tok, r: Ranking, max_len: int) -> list[list[int]]:
    """Token ids of each answer's conversation, ending with <|reward|>; too long -> keep BOS + the end."""
    from gptlab.tokenizer.chat import render_for_reward

    out = []
    for i in range(len(r.responses)):
        ids = render_for_reward(tok, conversation(r, i))
        out.append(keep_end(ids, max_len))
    return out


def prompt_key(r: Ranking) -> str:
    return json.dumps(r.prompt, sort_keys=True, ensure_ascii=False)


def ranking_key(r: Ranking) -> str:
    return json.dumps([r.prompt, r.responses], sort_keys=True, ensure_ascii=False)


def split_heldout(
    rankings: list[Ranking], frac: float, seed: int, by: str = "prompt"
) -> tuple[list[Ranking], list[Ranking]]:
    """(train, held out) by a stable hash of each ranking's prompt (`by="prompt"`: one prompt's
    rankings stay on one side) or of the whole ranking (`by="ranking"`: the held-out answers are
    unseen, their prompts may not be; for data with few prompts, such as chitchat's 36 topics,
    where a prompt split holds out three topics and its accuracy swings with which three)."""
    if by not in ("prompt", "ranking"):
        raise ValueError(f"split by 'prompt' or 'ranking', not {by!r}")
    key = prompt_key if by == "prompt" else ranking_key

    def held(r: Ranking) -> bool:
        h = hashlib.blake2b(f"{seed}:{key(r)}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2**64 < frac

    return [r for r in rankings if not held(r)], [r for r in rankings if held(r)]


def collate(groups: list[tuple[list[list[int]], list[tuple[int, int]]]], pad_id: int, device: str = "cpu"):
    """Rows (each distinct sequence once) + pairs as row indices.

    groups: per ranking, (its K encoded sequences, its (chosen, rejected) index pairs).
    Returns idx (N, T) right-padded, last (N,) index of <|reward|>, chosen (P,), rejected (P,).
    """
    rows: dict[tuple[int, ...], int] = {}
    chosen, rejected = [], []
    for seqs, pairs in groups:
        ids = [rows.setdefault(tuple(s), len(rows)) for s in seqs]
        for c, r in pairs:
            chosen.append(ids[c])
            rejected.append(ids[r])
    seqs = list(rows)
    width = max(map(len, seqs))
    idx = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        idx[b, : len(s)] = torch.tensor(s)
    last = torch.tensor([len(s) - 1 for s in seqs])
    to = lambda t: t.to(device)
    return to(idx), to(last), to(torch.tensor(chosen)), to(torch.tensor(rejected))


class PairBatches:
    """Endless batches of whole prompts (all their rankings' pairs), reshuffled each epoch.

    A batch takes prompts until it holds at least `batch_pairs` pairs. Its position (epoch,
    index) is checkpointed, so a resumed run sees the same batches.
    """

    def __init__(self, encoded: list[tuple[str, list[list[int]], list[tuple[int, int]]]], batch_pairs: int,
                 pad_id: int, seed: int = 0, rank: int = 0, world_size: int = 1, device: str = "cpu"):
        by_prompt: dict[str, list] = {}
        for key, seqs, pairs in encoded:
            by_prompt.setdefault(key, []).append((seqs, pairs))
        self.groups = [by_prompt[k] for k in sorted(by_prompt)][rank::world_size]
        if not self.groups:
            raise ValueError("no training rankings (every one was held out, or the data is empty)")
        self.batch_pairs, self.pad_id, self.seed, self.device = batch_pairs, pad_id, seed, device
        self.epoch, self.pos = 0, 0
        self._order = self._shuffle()

    def _shuffle(self) -> list[int]:
        order = list(range(len(self.groups)))
        random.Random(f"reward:{self.seed}:{self.epoch}").shuffle(order)
        return order

    def __iter__(self) -> PairBatches:
        return self

    def __next__(self):
        picked, n = [], 0
        while n < self.batch_pairs:
            if self.pos == len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._shuffle()
            group = self.groups[self._order[self.pos]]
            self.pos += 1
            picked += group
            n += sum(len(p) for _, p in group)
        return collate(picked, self.pad_id, self.device)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._shuffle()


def bt_loss(model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict[str, Any]]:
    """Bradley-Terry: mean -log sigmoid(r_chosen - r_rejected) over the batch's pairs."""
    idx, last, chosen, rejected = batch
    scores = model(idx).gather(1, last.view(-1, 1)).squeeze(1)  # (N,) the scalar at <|reward|>
    diff = scores[chosen] - scores[rejected]
    loss = -F.logsigmoid(diff).mean()
    return loss, {"tokens": idx.numel(), "pair_acc": (diff > 0).float().mean(), "margin": diff.mean()}


# ---------------------------------------------------------------------------- evaluation


@torch.no_grad()
def score_all(model: ScalarHeadModel, encoded: list[list[list[int]]], pad_id: int, batch_size: int = 32) -> list[list[float]]:
    """The reward of every sequence, grouped as `encoded` is (per ranking)."""
    # Each distinct sequence is scored once (collate merges duplicates, e.g. two equal answers).
    unique = list(dict.fromkeys(tuple(s) for seqs in encoded for s in seqs))
    device = next(model.parameters()).device
    score: dict[tuple[int, ...], float] = {}
    for start in range(0, len(unique), batch_size):
        chunk = [list(s) for s in unique[start : start + batch_size]]
        idx, last, _, _ = collate([(chunk, [])], pad_id, device)
        score.update(zip(unique[start : start + batch_size], model.score_at(idx, last).float().tolist()))
    return [[score[tuple(s)] for s in seqs] for seqs in encoded]


def pair_report(rankings: list[Ranking], scores: list[list[float]]) -> dict[str, Any]:
    """Pairwise accuracy, ROC AUC and the baselines, overall and per source (meta["source"], and
    meta["task"] where there is one: "demos:chitchat").

    AUC: each pair is scored twice, (chosen, rejected) labelled 1 and (rejected, chosen) labelled
    0, with the score difference as the classifier's score. Ties count one half in accuracies.
    """
    from gptlab.eval.metrics import grouped_bootstrap_ci, roc_auc

    def summary(idx: list[int]) -> dict[str, Any]:
        diffs, longer, owner = [], [], []
        for i in idx:
            r, s = rankings[i], scores[i]
            for c, j in r.pairs():
                diffs.append(s[c] - s[j])
                lc, lj = len(r.responses[c]), len(r.responses[j])
                longer.append(1.0 if lc > lj else 0.5 if lc == lj else 0.0)
                owner.append(i)
        if not diffs:
            return {"pairs": 0}
        right = [1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs]
        acc, length = sum(right) / len(right), sum(longer) / len(longer)
        auc = roc_auc([1] * len(diffs) + [0] * len(diffs), diffs + [-d for d in diffs])
        best = longer if length > 0.5 else [0.5] * len(right)
        # the K(K-1)/2 pairs of one ranking share answers: resample rankings, not pairs
        lo, hi = grouped_bootstrap_ci([a - b for a, b in zip(right, best)], owner)
        return {"pairs": len(diffs), "rankings": len(idx), "accuracy": acc, "roc_auc": auc,
                "random_baseline": 0.5, "longer_wins_baseline": length,
                "margin_over_best_baseline": acc - max(0.5, length), "margin_ci95": [lo, hi],
                "mean_margin": sum(diffs) / len(diffs)}

    report = summary(list(range(len(rankings))))
    sources: dict[str, list[int]] = {}
    for i, r in enumerate(rankings):
        name = str(r.meta.get("source", "unknown")) + (f":{r.meta['task']}" if r.meta.get("task") else "")
        sources.setdefault(name, []).append(i)
    if len(sources) > 1:
        report["by_source"] = {k: summary(v) for k, v in sorted(sources.items())}
    if report.get("pairs"):
        report["beats_baselines"] = report["accuracy"] > max(0.5, report["longer_wins_baseline"])
        report["clearly_beats_baselines"] = report["margin_ci95"][0] > 0
    return report


def load_reward_model(folder: str | Path, device: str = "cpu") -> ScalarHeadModel:
    """Trunk (model.safetensors) + head (head.safetensors) from a reward-model folder, in eval mode."""
    from gptlab.model.io import load_model

    folder = Path(folder)
    if not (folder / "head.safetensors").exists():
        raise InputError(folder, "no head.safetensors here; is this a reward-model folder (gptlab reward train)?")
    model = ScalarHeadModel(load_model(folder))
    model.load_head(folder)
    return model.to(device).eval()


# ---------------------------------------------------------------------------- CLI


SUBCOMMANDS = {
    "train": "train the reward model on rankings",
    "eval": "held-out pairwise accuracy, ROC AUC and baselines -> eval.json",
}

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gptlab reward", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, help="what to do")
    t = sub.add_parser("train", help="train the reward model on rankings", formatter_class=_HelpFormatter,
                       description="Initialise from the SFT model, add a scalar head at <|reward|>, train on all pairs of each ranking.")
    t.add_argument("--run", default="tiny", help="run name: default paths under runs/<run>/")
    t.add_argument("--from", dest="init", type=Path, help="SFT folder (full weights or LoRA adapter; default: runs/<run>/sft)")
    t.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the --from folder's sibling 'tokenizer')")
    t.add_argument("--data", type=Path, action="append", default=[],
                   help="rankings file: ranked lists or prompt/chosen/rejected JSONL (repeatable; default: every "
                        "runs/<run>/rankings/*.jsonl except candidates.jsonl)")
    t.add_argument("--out", type=Path, help="output folder (default: runs/<run>/rm)")
    t.add_argument("--val-frac", type=float, default=0.15, help="fraction of prompts (or rankings) held out for eval")
    t.add_argument("--split-by", choices=("prompt", "ranking"), default="prompt",
                   help="held-out unit: whole prompts (strictest), or rankings (unseen answers to seen prompts; "
                        "for data with few distinct prompts)")
    t.add_argument("--steps", type=int, default=150, help="optimizer steps")
    t.add_argument("--time-budget", type=float, help="stop after this many seconds (the LR schedule follows time)")
    t.add_argument("--batch-pairs", type=int, default=32, help="a batch takes whole prompts until it has this many pairs")
    t.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (trunk)")
    t.add_argument("--max-tokens", type=int,
                   help="read at most the last N tokens of each conversation (BOS kept; default: the model's "
                        "context). Shorter windows train faster; the saved model is read the same way")
    t.add_argument("--head-lr", type=float, default=3e-3,
                   help="peak learning rate of the scalar head (zero-initialised: it must move far in few steps)")
    t.add_argument("--warmup", type=int, default=10, help="linear LR warmup steps")
    t.add_argument("--weight-decay", type=float, default=0.0, help="decoupled weight decay on matrices")
    t.add_argument("--eval-every", type=int, default=50, help="held-out pair accuracy every N steps (0: off)")
    t.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: only at the end)")
    t.add_argument("--log-every", type=int, default=10, help="progress line every N steps")
    t.add_argument("--seed", type=int, default=1337, help="seeds the held-out split and the batch order")
    t.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint")
    t.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    t.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"), help="autocast dtype")

    e = sub.add_parser("eval", help="held-out pairwise accuracy, ROC AUC and baselines -> eval.json", description="held-out pairwise accuracy, ROC AUC and baselines -> eval.json",
                       formatter_class=_HelpFormatter)
    e.add_argument("--run", default="tiny", help="run name: default paths under runs/<run>/")
    e.add_argument("--rm", type=Path, help="reward-model folder (default: runs/<run>/rm)")
    e.add_argument("--data", type=Path, action="append", default=[],
                   help="held-out rankings (repeatable; default: <rm>/heldout.jsonl)")
    e.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the rm folder's sibling 'tokenizer')")
    e.add_argument("--out", type=Path, help="report file (default: <rm>/eval.json)")
    e.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    return p


def _load_data(paths: list[Path]) -> list[Ranking]:
    from gptlab.data.preferences import load_preferences

    out: list[Ranking] = []
    for path in paths:
        got, counts = load_preferences(path)
        print(f"data: {path}: {counts['kept']} rankings, {counts['pairs']} pairs")
        out += got
    return out


def _default_data(run: str) -> list[Path]:
    from gptlab.common import run_dir

    folder = run_dir(run, "rankings")
    paths = sorted(p for p in folder.glob("*.jsonl") if p.name != "candidates.jsonl") if folder.is_dir() else []
    empty = [p for p in paths if p.stat().st_size == 0]
    for p in empty:  # e.g. a rule ranking where every sampled answer scored the same
        print(f"data: {p}: empty (no rankings), skipped")
    paths = [p for p in paths if p not in empty]
    if not paths:
        raise InputError(folder, "no rankings found: make some with `gptlab rank rule|ratings|label`, or give --data")
    return paths


def _load_trunk(folder: Path):
    from gptlab.model.io import load_model

    if (folder / "adapter_config.json").exists():
        from gptlab.model.lora import load_model_with_adapter

        trunk = load_model_with_adapter(folder, merge=True)  # frozen and in eval mode: undo both
        for p in trunk.parameters():
            p.requires_grad_(True)
        return trunk.train()
    return load_model(folder)


def evaluate_folder(model: ScalarHeadModel, tok, rankings: list[Ranking]) -> dict[str, Any]:
    from gptlab.tokenizer.special import PAD

    encoded = [encode(tok, r, model.max_tokens) for r in rankings]
    return pair_report(rankings, score_all(model, encoded, tok.token_id(PAD)))


def _print_report(rep: dict[str, Any]) -> None:
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


def train(args: argparse.Namespace) -> int:
    from gptlab.common import print0, run_dir, run_metadata, seed_everything
    from gptlab.data.preferences import save_rankings
    from gptlab.fileio import atomic_write_json
    from gptlab.model.io import save_model
    from gptlab.tokenizer.bpe import Tokenizer
    from gptlab.tokenizer.special import PAD
    from gptlab.train import checkpoint as ckpt
    from gptlab.train.distributed import cleanup, init_distributed
    from gptlab.train.loop import TrainConfig, Trainer
    from gptlab.train.tracker import build_tracker, truncate_metrics

    init = Path(args.init or run_dir(args.run, "sft"))
    out = Path(args.out or run_dir(args.run, "rm"))
    tok_dir = args.tokenizer or init.parent / "tokenizer"
    if not Path(tok_dir).exists():
        raise InputError(tok_dir, "tokenizer folder not found (give --tokenizer)")
    if not init.is_dir():
        raise InputError(init, "SFT folder not found (give --from)")
    if not 0 <= args.val_frac < 1:
        raise InputError(None, "--val-frac must be in [0, 1)")
    rankings = _load_data(args.data or _default_data(args.run))
    train_r, held = split_heldout(rankings, args.val_frac, args.seed, args.split_by)

    dist = init_distributed(args.device)
    try:
        seed_everything(args.seed)
        tok = Tokenizer.load(tok_dir)
        model = RewardModel(_load_trunk(init))
        max_len, pad_id = min(args.max_tokens or model.config.max_seq_len, model.config.max_seq_len), tok.token_id(PAD)
        model.max_tokens = max_len
        encoded = [(prompt_key(r), encode(tok, r, max_len), r.pairs()) for r in train_r]
        try:
            batches = PairBatches(encoded, args.batch_pairs, pad_id, args.seed, dist.rank, dist.world_size, dist.device)
        except ValueError as e:
            raise InputError(None, str(e)) from None
        print0(f"reward model: {model.trunk.num_params() / 1e6:.2f}M params from {init} | train {len(train_r)} rankings "
               f"({sum(len(p) for _, _, p in encoded)} pairs, {len(batches.groups)} prompts) | held out {len(held)}")

        held_enc = [encode(tok, r, max_len) for r in held]

        def evaluate(m: torch.nn.Module) -> dict[str, float]:
            rep = pair_report(held, score_all(m, held_enc, pad_id))
            return {"val_pair_acc": rep["accuracy"], "val_auc": rep["roc_auc"]} if rep.get("pairs") else {}

        cfg = TrainConfig(max_steps=args.steps, max_time=args.time_budget, lr=args.lr, head_lr=args.head_lr,
                          weight_decay=args.weight_decay,
                          warmup_steps=args.warmup, device=args.device, dtype=args.dtype, seed=args.seed,
                          log_every=args.log_every, eval_every=(args.eval_every or None) if held else None,
                          save_every=args.save_every or None)
        ckpt_dir = out / CHECKPOINT
        resuming = args.resume and ckpt.has_checkpoint(ckpt_dir)
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resuming:
                (out / "metrics.jsonl").unlink(missing_ok=True)
            save_rankings(out / HELDOUT, held)
        stage_state = {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, list) else v)
                       for k, v in vars(args).items()}
        tracker = build_tracker("none", out, dist.is_main)
        on_resume = (lambda step: truncate_metrics(out / "metrics.jsonl", step)) if dist.is_main else None
        trainer = Trainer(model, batches, bt_loss, cfg, out_dir=ckpt_dir, evaluate=evaluate, on_resume=on_resume,
                          tracker=tracker, dist=dist, stage_state=stage_state, metadata=run_metadata(dist.device))
        result = trainer.fit(resume=args.resume)
        if dist.is_main:
            model.eval()
            save_model(out, model.trunk)
            model.save_head(out)
            atomic_write_json(out / "reward_config.json", {"init": str(init), "train": asdict(cfg),
                                                          "data": [str(p) for p in (args.data or _default_data(args.run))],
                                                          "train_rankings": len(train_r), "heldout_rankings": len(held),
                                                          "max_tokens": max_len})
            rep = pair_report(held, score_all(model, held_enc, pad_id)) if held else {"pairs": 0}
            atomic_write_json(out / "eval.json", {"data": str(out / HELDOUT), **rep})
            print0(f"done: {result.step} steps -> {out}")
            _print_report(rep)
    finally:
        cleanup()
    return 0


def evaluate_cmd(args: argparse.Namespace) -> int:
    from gptlab.common import pick_device, run_dir
    from gptlab.fileio import atomic_write_json
    from gptlab.tokenizer.bpe import Tokenizer

    folder = Path(args.rm or run_dir(args.run, "rm"))
    paths = args.data or [folder / HELDOUT]
    rankings = _load_data(paths)
    model = load_reward_model(folder, pick_device(args.device))
    tok = Tokenizer.load(args.tokenizer or folder.parent / "tokenizer")
    rep = evaluate_folder(model, tok, rankings)
    out = args.out or folder / "eval.json"
    atomic_write_json(out, {"data": [str(p) for p in paths], **rep})
    _print_report(rep)
    print(f"-> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return train(args) if args.cmd == "train" else evaluate_cmd(args)


if __name__ == "__main__":
    raise SystemExit(main())

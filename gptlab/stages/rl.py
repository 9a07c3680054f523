"""`gptlab rl --algo ppo|dpo|grpo`: align the SFT model, against a frozen copy of itself.

    gptlab rl --algo ppo  --run tiny                  # RM reward - beta * KL, critic + GAE -> runs/tiny/rl
    gptlab rl --algo grpo --run tiny --tasks arithmetic   # verifiable reward, group advantages
    gptlab rl --algo dpo  --run tiny                  # preference pairs of runs/tiny/rankings/*.jsonl
    gptlab rl --algo ppo  --run tiny --resume         # continue at the last rollout iteration

All three run through the one training loop (gptlab.train.loop.Trainer): DPO is an offline loss
over pairs; PPO and GRPO feed it an on-policy iterator (gptlab.stages.rollout.OnPolicyBatches)
that samples a rollout batch with the current policy through the KV-cache engine, then serves it
as a few epochs of minibatches, so optimiser, schedule, clipping, checkpoints and metrics.jsonl
are the loop's. One optimiser step is one minibatch; one logged row is one rollout iteration.

The policy starts from --from (default runs/<run>/sft) and the reference is a frozen copy (or
--ref). Dropout is switched off in both: PPO's ratio must be exactly 1 on its first pass.
Outputs in --out (default runs/<run>/rl): model.safetensors + config.json (the policy, a plain
GPT like SFT's), metrics.jsonl, rl.png (reward / KL / entropy / clip fraction / length curves),
loss.png, eval.json (held-out reward and task accuracy before and after, their paired gains with 95%
intervals, rollout tokens/s), heldout_items.jsonl (each held-out evaluation, prompt by prompt).
PPO's resumable checkpoint (policy + critic + optimizer) lives in <out>/checkpoint/.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from gptlab.errors import InputError
from gptlab.stages.heldout import ITEMS, make_heldout_eval, paired_summary
from gptlab.train.cli_args import HelpFormatter as _HelpFormatter

ALGOS = ("ppo", "dpo", "grpo")
CHECKPOINT = "checkpoint"  # PPO: the actor-critic checkpoint, beside the plain policy


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gptlab rl", description=__doc__.split("\n\n")[0], formatter_class=_HelpFormatter)
    p.add_argument("--algo", choices=ALGOS, required=True,
                   help="ppo: reward model + KL + critic; dpo: preference pairs; grpo: verifiable task reward")
    io = p.add_argument_group("paths and data")
    io.add_argument("--run", default="tiny", help="run name: default paths under runs/<run>/")
    io.add_argument("--from", dest="init", type=Path, help="policy to start from (default: runs/<run>/sft)")
    io.add_argument("--ref", type=Path, help="frozen reference model (default: the --from model)")
    io.add_argument("--rm", type=Path, help="PPO: reward model folder (default: runs/<run>/rm)")
    io.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: the --from folder's sibling 'tokenizer')")
    io.add_argument("--out", type=Path, help="output folder (default: runs/<run>/rl)")
    io.add_argument("--tasks", help="PPO/GRPO prompts: comma-separated tasks; train split for RL, test split held out "
                    "(default: ppo arithmetic,play_speaker; grpo arithmetic). PPO takes any task (chitchat too: the "
                    "reward model scores it); GRPO needs a task with a verifier")
    io.add_argument("--prompts", type=Path, help="PPO: prompts file instead of --tasks (.txt one per line, or JSONL "
                    "'prompt'); the last 10%% are held out")
    io.add_argument("--data", type=Path, action="append", default=[],
                    help="DPO: rankings files (repeatable; default: runs/<run>/rankings/*.jsonl but candidates.jsonl)")
    io.add_argument("--train-prompts", type=int, default=2000, help="at most this many train prompts per task")
    io.add_argument("--eval-prompts", type=int, default=32, help="held-out prompts (per task) or DPO pairs for eval.json")
    io.add_argument("--eval-samples", type=int, help="PPO/GRPO: also score K replies per held-out prompt sampled as in "
                    "the rollouts, besides the greedy one (default grpo 2, ppo 0)")
    io.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")

    t = p.add_argument_group("training")
    t.add_argument("--iterations", type=int, help="rollout iterations (PPO/GRPO) or optimizer steps (DPO) "
                   "(default 30 / 30 / 100 unless --time-budget)")
    t.add_argument("--time-budget", type=float, help="stop after this many seconds of training")
    t.add_argument("--lr", type=float, default=1e-5, help="peak learning rate (policy and critic)")
    t.add_argument("--warmup", type=int, default=0, help="linear LR warmup, optimizer steps")
    t.add_argument("--min-lr-ratio", type=float, default=1.0, help="final LR / peak (1: constant LR)")
    t.add_argument("--weight-decay", type=float, default=0.0, help="decoupled weight decay on matrices")
    t.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm (0: off)")
    t.add_argument("--seed", type=int, default=1337, help="prompt order, sampling and batch order")

    r = p.add_argument_group("rollouts (PPO, GRPO)")
    r.add_argument("--prompts-per-iter", type=int, help="prompts per rollout iteration (default ppo 16, grpo 8)")
    r.add_argument("--group-size", type=int, default=8, help="GRPO: replies per prompt (G)")
    r.add_argument("--minibatch", type=int, help="rows per optimizer step (default ppo 8, grpo 32)")
    r.add_argument("--epochs", type=int, help="passes over each rollout batch (default ppo 2, grpo 1)")
    r.add_argument("--max-new-tokens", type=int, default=48, help="reply budget in tokens")
    r.add_argument("--temperature", type=float, default=1.0, help="rollout sampling temperature")
    r.add_argument("--top-k", type=int, help="rollouts sample among the k likeliest tokens")
    r.add_argument("--max-batch", type=int, default=64, help="sequences decoded at once by the engine")
    r.add_argument("--clip", type=float, default=0.2, help="policy ratio clip epsilon")

    k = p.add_argument_group("KL, critic (PPO) and DPO")
    k.add_argument("--kl-coef", type=float, help="beta: KL penalty weight (default ppo 0.05 in the reward; "
                   "grpo 0.05: a k3 term in the loss)")
    k.add_argument("--kl-estimator", choices=("k1", "k3"), default="k1", help="PPO: per-token KL estimator")
    k.add_argument("--kl-target", type=float, help="PPO: adapt beta toward this KL per reply (off unless given)")
    k.add_argument("--kl-horizon", type=int, default=10000, help="PPO: adaptive controller horizon, in rollouts")
    k.add_argument("--value-init", choices=("rm", "sft"), default="rm", help="PPO: critic trunk from the RM or the SFT model")
    k.add_argument("--vf-coef", type=float, default=0.1, help="PPO: value loss weight")
    k.add_argument("--value-clip", type=float, default=0.2, help="PPO: value clip around the old values")
    k.add_argument("--gamma", type=float, default=1.0, help="PPO: discount")
    k.add_argument("--lam", type=float, default=0.95, help="PPO: GAE lambda")
    k.add_argument("--missing-eos-penalty", type=float, help="PPO: subtract from the score of replies cut off by the budget")
    k.add_argument("--beta", type=float, default=0.1, help="DPO: beta of the implicit reward")
    k.add_argument("--batch-size", type=int, default=8, help="DPO: pairs per optimizer step")
    k.add_argument("--seq-len", type=int, help="DPO: tokens per conversation (default: the model's max_seq_len)")

    e = p.add_argument_group("evaluation, checkpoints, device")
    e.add_argument("--eval-every", type=int, default=0, help="held-out eval every N iterations (0: before and after only)")
    e.add_argument("--save-every", type=int, default=5, help="checkpoint every N iterations (and at the end)")
    e.add_argument("--tracker", choices=("none", "tensorboard", "wandb"), default="none", help="extra metrics sink")
    e.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    e.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"), help="autocast dtype")
    return p


# ---------------------------------------------------------------------------- models and data


def load_policy(folder: Path, tok: Any, device: str) -> nn.Module:
    """A stage folder (full weights or LoRA adapter) as a GPT on `device`, without dropout."""
    from dataclasses import replace

    from gptlab.infer.loading import load_for_inference

    model, _ = load_for_inference(folder, device=device, tokenizer=tok)
    model.requires_grad_(True)  # the policy trains (`frozen` turns this off again for the reference)
    for layer in model.layers:
        layer.dropout = nn.Identity()
    model.config = replace(model.config, dropout=0.0)
    return model


def frozen(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def prompt_pools(args: argparse.Namespace, tok: Any, max_prompt: int) -> tuple[list, list]:
    """(train pool, held-out pool) of PromptItems from --prompts or --tasks."""
    from gptlab.common import print0
    from gptlab.stages import rollout

    if args.prompts is not None:
        if args.algo == "grpo":
            raise InputError(args.prompts, "GRPO needs a verifier: use --tasks, not --prompts")
        from gptlab.align.rank_cli import read_prompts

        pool, dropped = rollout.file_prompts(tok, read_prompts(args.prompts), max_prompt)
        n_eval = min(len(pool) // 10, args.eval_prompts)
        train, held = pool[: len(pool) - n_eval], pool[len(pool) - n_eval :]
    else:
        from gptlab.eval.tasks import task_names

        # PPO's reward is the reward model's, so its tasks need no verifier (chitchat); GRPO's do
        names = task_names(args.tasks, scorable=args.algo == "grpo")
        train, dropped = rollout.task_prompts(tok, names, "train", args.train_prompts, max_prompt, args.seed)
        held, _ = rollout.task_prompts(tok, names, "test", args.eval_prompts, max_prompt, args.seed)
    if not train:
        raise InputError(args.prompts, "no prompts fit the model's context with room for a reply")
    print0(f"prompts: {len(train):,} train, {len(held):,} held out ({dropped} too long, dropped)")
    return train, held


def _rankings(args: argparse.Namespace) -> list:
    from gptlab.common import run_dir
    from gptlab.data.preferences import load_preferences

    paths = list(args.data)
    if not paths:
        folder = run_dir(args.run, "rankings")
        paths = sorted(p for p in folder.glob("*.jsonl") if p.name != "candidates.jsonl") if folder.is_dir() else []
        if not paths:
            raise InputError(folder, "no rankings found: make some with `gptlab rank ...`, or give --data")
    out = []
    for path in paths:
        out += load_preferences(path)[0]
    return out


# ---------------------------------------------------------------------------- records


def plot_rl(metrics_path: Path, out_path: Path, title: str) -> Path | None:
    """One panel per logged curve: reward, KL, entropy, clip fraction, reply length, held-out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gptlab.fileio import atomic_open
    from gptlab.train.tracker import read_metrics

    recs = read_metrics(metrics_path)
    keys = [("reward", "reward"), ("kl", "KL (per reply)"), ("entropy", "entropy (nats/token)"),
            ("clipfrac", "clip fraction"), ("response_len", "reply length (tokens)"),
            ("heldout_reward", "held-out RM reward"), ("heldout_accuracy", "held-out accuracy"),
            ("heldout_task_reward", "held-out task reward"),
            ("heldout_pref_accuracy", "held-out preference accuracy"), ("loss", "loss")]
    panels = [(k, lab, [(r["step"], r[k]) for r in recs if r.get(k) is not None]) for k, lab in keys]
    panels = [p for p in panels if p[2]]
    if not panels:
        return None
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), dpi=100, squeeze=False)
    for ax, (_, label, pts) in zip(axes.flat, panels):
        ax.plot(*zip(*pts), "o-" if len(pts) < 30 else "-", markersize=3)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(out_path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return out_path


def write_eval(out: Path, algo: str, metrics_path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """eval.json: the first and last held-out records (before / after), medians of the run."""
    from gptlab.fileio import atomic_write_json
    from gptlab.train.tracker import read_metrics

    recs = read_metrics(metrics_path)
    evals = [r for r in recs if any(k.startswith("heldout_") for k in r)]
    train = [r for r in recs if "loss" in r]
    strip = lambda r: {k: v for k, v in r.items() if k.startswith("heldout_")}
    report: dict[str, Any] = {"algo": algo, **extra}
    if evals:
        report["before"], report["after"] = strip(evals[0]), strip(evals[-1])
        report["before_step"], report["after_step"] = evals[0]["step"], evals[-1]["step"]
        report["delta"] = {k: report["after"][k] - report["before"][k] for k in report["after"] if k in report["before"]}
    paired = paired_summary(out / ITEMS)
    if paired:  # the same held-out prompts before and after: gains with 95% intervals
        report["paired"] = paired
    for key in ("gen_tok_per_s", "kl", "reward", "entropy", "clipfrac", "response_len"):
        vals = [r[key] for r in train if r.get(key) is not None]
        if vals:
            report[f"{key}_first"], report[f"{key}_last"] = vals[0], vals[-1]
            if key in ("gen_tok_per_s", "kl"):
                report[f"{key}_median"] = statistics.median(vals)
                report[f"{key}_max"] = max(vals)
    path = out / "eval.json"
    if path.exists():  # keep `gptlab eval` results written beside it
        from gptlab.fileio import read_json

        old = read_json(path)
        if "results" in old:
            report["results"] = old["results"]
    atomic_write_json(path, report)
    return report


# ---------------------------------------------------------------------------- main


def _defaults(args: argparse.Namespace) -> None:
    ppo, grpo = args.algo == "ppo", args.algo == "grpo"
    if args.tasks is None:
        args.tasks = "arithmetic,play_speaker" if ppo else "arithmetic"
    if args.prompts_per_iter is None:
        args.prompts_per_iter = 16 if ppo else 8
    if args.minibatch is None:
        args.minibatch = 8 if ppo else 32
    if args.epochs is None:
        args.epochs = 2 if ppo else 1
    if args.kl_coef is None:
        args.kl_coef = 0.05  # PPO: in the reward; GRPO: a k3 term in the loss (keeps KL bounded)
    if args.eval_samples is None:
        args.eval_samples = 2 if grpo else 0
    if args.eval_samples < 0:
        raise InputError(None, "--eval-samples must be 0 or more")
    for name in ("prompts_per_iter", "minibatch", "epochs", "group_size", "max_new_tokens", "batch_size", "max_batch"):
        if getattr(args, name) < 1:
            raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")
    if grpo and args.group_size < 2:
        raise InputError(None, "--group-size must be at least 2 (advantages are relative to the group)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _defaults(args)
    from gptlab.common import pick_autocast_dtype, print0, run_dir, run_metadata, seed_everything
    from gptlab.infer.loading import make_engine
    from gptlab.tokenizer.bpe import Tokenizer
    from gptlab.tokenizer.special import PAD
    from gptlab.train import checkpoint as ckpt
    from gptlab.train.distributed import init_distributed
    from gptlab.train.loop import TrainConfig, Trainer, autocast_context
    from gptlab.train.plots import plot_losses
    from gptlab.train.tracker import build_tracker, truncate_metrics

    init = args.init or run_dir(args.run, "sft")
    out = Path(args.out or run_dir(args.run, "rl"))
    tok_dir = args.tokenizer or Path(init).parent / "tokenizer"
    if not Path(tok_dir).exists():
        raise InputError(tok_dir, "tokenizer folder not found (give --tokenizer)")
    dist = init_distributed(args.device)
    if dist.enabled:
        raise InputError(None, "gptlab rl runs in one process (rollouts are not sharded across ranks)")
    device = dist.device
    dtype = pick_autocast_dtype(device, args.dtype)
    seed_everything(args.seed)
    tok = Tokenizer.load(tok_dir)
    pad_id = tok.token_id(PAD)
    policy = load_policy(Path(init), tok, device)
    ref = frozen(load_policy(Path(args.ref or init), tok, device))
    cfg_len = policy.config.max_seq_len

    def autocast():
        return autocast_context(device, dtype)

    tracker_cfg: dict[str, Any] = {"stage": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    tracker_cfg["stage"]["data"] = [str(d) for d in args.data]
    extra: dict[str, Any] = {"from": str(init)}
    if args.algo == "dpo":
        from gptlab.stages import dpo

        seq_len = args.seq_len or cfg_len
        pairs, dropped = dpo.ranking_pairs(tok, _rankings(args), seq_len)
        import random as _random

        _random.Random(f"dpo-heldout:{args.seed}").shuffle(pairs)
        n_eval = min(args.eval_prompts, len(pairs) // 5)
        held_pairs, pairs = pairs[:n_eval], pairs[n_eval:]
        print0(f"dpo: {len(pairs):,} train pairs, {len(held_pairs):,} held out ({dropped} cut off, dropped)")
        try:
            batches: Any = dpo.PreferenceBatches(pairs, args.batch_size, pad_id, args.seed, device)
        except ValueError as e:
            raise InputError(None, str(e)) from None
        model: nn.Module = policy
        loss_fn = dpo.make_dpo_loss(ref, args.beta)
        evaluate = (lambda m: dpo.heldout_preferences(m, ref, held_pairs, args.beta, pad_id)) if held_pairs else None
        steps_per_iter = 1
        max_steps = args.iterations if args.iterations is not None else (None if args.time_budget else 100)
        ckpt_dir = out
    else:
        max_prompt = cfg_len - args.max_new_tokens - 1
        if max_prompt < 4:
            raise InputError(None, f"--max-new-tokens {args.max_new_tokens} leaves no room in the context ({cfg_len})")
        train_pool, held = prompt_pools(args, tok, max_prompt)
        rollout_rows = args.prompts_per_iter * (args.group_size if args.algo == "grpo" else 1)
        # No more slots than rows: a full cache takes the engine's no-gather path.
        engine = make_engine(policy, tok, max_batch=min(args.max_batch, rollout_rows), autocast_dtype=dtype)
        reward_fn = None
        if args.algo == "ppo":
            from gptlab.model.heads import ScalarHeadModel
            from gptlab.model.io import load_model
            from gptlab.stages import ppo
            from gptlab.stages.reward import load_reward_model

            rm_dir = Path(args.rm or run_dir(args.run, "rm"))
            rm = frozen(load_reward_model(rm_dir, device=device))
            reward_fn = ppo.make_rm_reward(rm, tok, pad_id)
            if args.value_init == "rm":
                critic = ScalarHeadModel(load_model(rm_dir, device=device))
                critic.load_head(rm_dir)
            else:
                critic = ScalarHeadModel(load_model(Path(init), device=device))
            for layer in critic.trunk.layers:
                layer.dropout = nn.Identity()
            model = ppo.ActorCritic(policy, critic.to(device))
            pcfg = ppo.PPOConfig(args.prompts_per_iter, args.minibatch, args.epochs, args.max_new_tokens,
                                 args.temperature, args.top_k, args.kl_coef, args.kl_estimator, args.kl_target,
                                 args.kl_horizon, args.clip, args.value_clip, args.vf_coef, args.gamma, args.lam,
                                 args.missing_eos_penalty, args.seed)
            batches = ppo.PPOBatches(model, ref, engine, tok, train_pool, reward_fn, pcfg, pad_id, autocast)

            def loss_fn(m: nn.Module, mb: dict[str, Any]):
                return ppo.ppo_loss(m, mb, args.clip, args.value_clip, args.vf_coef)

            ckpt_dir = out / CHECKPOINT
            extra["rm"] = str(rm_dir)
        else:
            from gptlab.stages import grpo

            gcfg = grpo.GRPOConfig(args.prompts_per_iter, args.group_size, args.minibatch, args.epochs,
                                   args.max_new_tokens, args.temperature, args.top_k, args.kl_coef, args.clip,
                                   seed=args.seed)
            batches = grpo.GRPOBatches(policy, ref, engine, tok, train_pool, gcfg, pad_id, autocast)
            model = policy

            def loss_fn(m: nn.Module, mb: dict[str, Any]):
                return grpo.grpo_loss(m, mb, args.clip, args.kl_coef)

            ckpt_dir = out
        evaluate = make_heldout_eval(engine, tok, held, args.max_new_tokens, reward_fn, out / ITEMS,
                                     args.eval_samples, args.temperature, args.top_k, args.seed)
        steps_per_iter = batches.steps_per_iteration
        iters = args.iterations if args.iterations is not None else (None if args.time_budget else 30)
        max_steps = iters * steps_per_iter if iters is not None else None
        extra["steps_per_iteration"] = steps_per_iter

    huge = 10**12  # "never" for the periodic hooks: they still run at step 0 and at the end
    cfg = TrainConfig(
        max_steps=max_steps, max_time=args.time_budget, lr=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup, min_lr_ratio=args.min_lr_ratio, grad_clip=args.grad_clip or None,
        device=device, dtype=args.dtype, seed=args.seed, log_every=steps_per_iter,
        eval_every=steps_per_iter * args.eval_every if args.eval_every else huge,
        save_every=steps_per_iter * args.save_every if args.save_every else None,
    )
    resuming = args.resume and ckpt.has_checkpoint(ckpt_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not resuming:
        for name in ("metrics.jsonl", "eval.json", "rl.png", "loss.png", ITEMS):
            (out / name).unlink(missing_ok=True)
    tracker = build_tracker(args.tracker, out, run_name=f"{args.run}-rl-{args.algo}", config=tracker_cfg)
    meta = run_metadata(device)
    meta.update(algo=args.algo, init=str(init), params=policy.num_params())

    def on_resume(step: int) -> None:
        truncate_metrics(out / "metrics.jsonl", step)  # PPO's checkpoint sits one level down

    print0(f"rl {args.algo}: from {init} | lr {args.lr:g} | {steps_per_iter} optimizer steps per iteration | "
           f"device {device}")
    trainer = Trainer(model, batches, loss_fn, cfg, out_dir=ckpt_dir, evaluate=evaluate, on_resume=on_resume,
                      tracker=tracker, dist=dist, stage_state=tracker_cfg["stage"], metadata=meta)
    result = trainer.fit(resume=args.resume)
    if args.algo == "ppo":
        from gptlab.model.io import save_model

        save_model(out, policy)
    extra.update(steps=result.step, iterations=result.step // steps_per_iter, train_seconds=round(result.elapsed, 1),
                 config={k: v for k, v in asdict(cfg).items() if k in ("lr", "max_steps", "max_time", "seed")})
    report = write_eval(out, args.algo, out / "metrics.jsonl", extra)
    plot_rl(out / "metrics.jsonl", out / "rl.png", f"rl {args.algo} ({args.run})")
    plot_losses(out / "metrics.jsonl", out / "loss.png", title=f"rl {args.algo} {args.run}")
    line = f"done: {result.step} steps, {result.elapsed:.0f}s"
    for k, v in report.get("before", {}).items():
        line += f" | {k} {v:.3f} -> {report['after'].get(k, float('nan')):.3f}"
    if "gen_tok_per_s_median" in report:
        line += f" | rollouts {report['gen_tok_per_s_median']:,.0f} tok/s"
    print0(f"{line} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`gptlab sft`: supervised finetuning on conversations (full weights or LoRA), through the one loop.

What is particular to SFT is only the data and what is saved: conversations are rendered with
the chat template (gptlab.tokenizer.chat), packed into (B, T) rows whose targets are -1 except
on the assistant's own tokens (gptlab.data.sft_batches), and the loss is the model's mean
cross-entropy over those tokens. A few percent of the conversations are held out: their
assistant-token loss is `val_loss`, and their prompts are answered into `samples.md` by the
inference engine (KV cache, batched, stops at `<|end|>`, calculator calls run for real).

    gptlab sft --from runs/tiny/base                         # embedded mixture -> runs/tiny/sft
    gptlab sft --from runs/tiny/base --data chats.jsonl --mixture none
    gptlab sft --from runs/tiny/base --lora-rank 8           # adapter only: adapter.safetensors
    gptlab sft --from runs/tiny/base --lora-rank 8 --merge   # merged full weights
    gptlab sft --from runs/tiny/base --resume                # same trajectory after a kill

Output folder: full finetuning writes the usual checkpoint (model.safetensors, config.json,
optimizer.pt, train_state.json). LoRA writes `adapter.safetensors` + `adapter_config.json`
(base folder, rank, alpha, targets; `gptlab.model.lora.load_model_with_adapter` loads it), or
with --merge the merged model.safetensors + config.json; its resumable checkpoint (adapter +
optimizer state only, never a copy of the frozen base) lives in `<out>/checkpoint/`. Both write
metrics.jsonl, samples.md and loss.png.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from gptlab.errors import InputError
from gptlab.train.cli_args import (
    HelpFormatter,
    add_device_args,
    add_logging_args,
    add_schedule_args,
    loop_config,
)

DEFAULT_MAX_STEPS = 300
LORA_CHECKPOINT = "checkpoint"  # subfolder of --out holding a LoRA run's resumable state


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab sft",
        description="Supervised finetuning of a base model on conversations (loss on the assistant's "
        "tokens only), in full or with LoRA adapters.",
        formatter_class=HelpFormatter,
    )
    io = p.add_argument_group("paths and data")
    io.add_argument(
        "--run",
        default="tiny",
        help="run name: fills default paths runs/<run>/{base,tokenizer,sft}",
    )
    io.add_argument(
        "--from", dest="base", type=Path, help="base model folder (default: runs/<run>/base)"
    )
    io.add_argument(
        "--tokenizer",
        type=Path,
        help="tokenizer folder (default: the base folder's sibling 'tokenizer')",
    )
    io.add_argument("--out", type=Path, help="output folder (default: runs/<run>/sft)")
    io.add_argument(
        "--data",
        nargs="+",
        action="extend",
        default=[],
        help="conversations: JSONL/JSON/parquet files or hub datasets (hf:NAME[:CONFIG][@split=..,limit=N]) "
        "of OpenAI messages, ShareGPT or Alpaca records; repeatable",
    )
    io.add_argument(
        "--fmt",
        default="auto",
        choices=("auto", "messages", "sharegpt", "alpaca"),
        help="record format of --data files",
    )
    io.add_argument(
        "--lenient",
        action="store_true",
        help="skip (and count) malformed records instead of stopping",
    )
    io.add_argument(
        "--mixture",
        default="default",
        choices=("default", "none"),
        help="the embedded SFT mixture (chitchat, play questions, arithmetic with the calculator, "
        "identity) added to --data; 'none' trains on --data alone",
    )
    io.add_argument(
        "--mix",
        metavar="TASK=N",
        action="append",
        default=[],
        help="conversations of one task in the embedded mixture, e.g. --mix arithmetic=6000 "
        "--mix chitchat=0 (repeatable; the others keep their defaults)",
    )
    io.add_argument(
        "--val-frac",
        type=float,
        default=0.03,
        help="fraction of conversations held out for val loss and samples",
    )
    io.add_argument(
        "--max-val", type=int, default=200, help="at most this many held-out conversations"
    )
    io.add_argument(
        "--resume", action="store_true", help="continue the checkpoint in --out (same trajectory)"
    )

    t = p.add_argument_group("training")
    t.add_argument(
        "--steps",
        "--max-steps",
        dest="steps",
        type=int,
        help=f"optimizer steps (default {DEFAULT_MAX_STEPS} unless --time-budget is given)",
    )
    t.add_argument(
        "--time-budget",
        type=float,
        help="stop after this many seconds of training (the LR schedule follows time)",
    )
    t.add_argument("--batch-size", type=int, default=8, help="rows per micro-batch per process (B)")
    t.add_argument(
        "--seq-len",
        type=int,
        help="tokens per row (T); longer conversations are cut (default: the base's max_seq_len)",
    )
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    t.add_argument("--lr", type=float, help="peak learning rate (default: 1e-3 full, 2e-3 LoRA)")
    add_schedule_args(t, warmup=10)
    t.add_argument(
        "--weight-decay", type=float, default=0.0, help="decoupled weight decay on matrices"
    )
    t.add_argument(
        "--grad-clip", type=float, default=1.0, help="clip the gradient norm to this (0: off)"
    )
    t.add_argument(
        "--optimizer",
        choices=("adamw", "muon"),
        default="adamw",
        help="muon: Muon on hidden matrices",
    )
    t.add_argument(
        "--seed",
        type=int,
        default=1337,
        help="seeds the mixture, the val split, LoRA init and data order",
    )

    lo = p.add_argument_group("LoRA (off unless --lora-rank)")
    lo.add_argument("--lora-rank", type=int, help="train rank-r adapters instead of all weights")
    lo.add_argument(
        "--lora-alpha",
        type=float,
        help="adapter scale numerator: update = alpha/r * B A (default: 2 * rank)",
    )
    lo.add_argument(
        "--lora-targets",
        default="all",
        help="comma-separated linear layers to adapt (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or 'all'",
    )
    lo.add_argument(
        "--lora-dropout", type=float, default=0.0, help="dropout on the adapter's input"
    )
    lo.add_argument(
        "--merge", action="store_true", help="save merged full weights instead of the adapter"
    )

    e = p.add_argument_group("evaluation, samples, checkpoints, logging")
    add_logging_args(e, eval_every=50, save_every=100)
    e.add_argument(
        "--sample-every",
        type=int,
        default=100,
        help="answer held-out prompts into samples.md every N steps (0: off)",
    )
    e.add_argument(
        "--num-samples", type=int, default=4, help="held-out prompts answered per sampling"
    )
    e.add_argument(
        "--sample-tokens", type=int, default=64, help="max new tokens per sampled answer"
    )

    d = p.add_argument_group("device")
    add_device_args(d)
    return p


# ---------------------------------------------------------------------------- hooks


def _core(model: torch.nn.Module) -> torch.nn.Module:
    """The GPT under an AdapterOnly view (the engine needs hidden_states / lm_head)."""
    return getattr(model, "inner", model)


def make_evaluate(val_examples: list, batch_size: int, seq_len: int, pad_id: int, dist: Any):
    """Hook: val_loss = summed nats / count over the held-out conversations' assistant tokens."""
    from gptlab.data.sft_batches import eval_batches
    from gptlab.train.distributed import all_reduce_sum

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        sums = torch.zeros(2, dtype=torch.float64, device=dist.device)
        for x, y in eval_batches(
            val_examples, batch_size, seq_len, pad_id, dist.rank, dist.world_size, dist.device
        ):
            losses = model(x, y, reduction="none").double()
            sums[0] += losses.sum()  # ignored targets contribute 0
            sums[1] += (y != -1).sum()
        nats, count = all_reduce_sum(sums).tolist()
        return {"val_loss": nats / max(count, 1.0)}

    return evaluate


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def make_sample(
    tok: Any, val_convs: list, n: int, max_new: int, seed: int, out_dir: Path, is_main: bool
):
    """Hook: greedy answers to the first `n` held-out prompts, appended to samples.md."""
    from gptlab.infer.engine import Engine
    from gptlab.tokenizer.chat import render_prompt
    from gptlab.tokenizer.special import END, TOOL_CALL, TOOL_CALL_END
    from gptlab.tools.registry import ToolRegistry, make_tool_hook
    from gptlab.train.tracker import append_samples

    prompts: list[tuple[str, list[int]]] = []
    for conv in val_convs:
        first = next((i for i, m in enumerate(conv) if m["role"] == "assistant"), None)
        if first is None:
            continue
        user = conv[first - 1]["content"]
        prompts.append(
            (
                _one_line(user if isinstance(user, str) else str(user)),
                render_prompt(tok, conv[:first]),
            )
        )
        if len(prompts) == n:
            break
    # The calculator runs for real: a tool call's result is forced in, as in chat.
    hook_kw = {
        "tool_hook": make_tool_hook(tok, ToolRegistry()),
        "tool_call_id": tok.token_id(TOOL_CALL),
        "tool_call_end_id": tok.token_id(TOOL_CALL_END),
    }
    end_id = tok.token_id(END)

    def sample(model: torch.nn.Module, step: int) -> None:
        core = _core(model)
        engine = Engine(core, {end_id}, max_batch=max(1, len(prompts)), **hook_kw)
        room = [(text, ids) for text, ids in prompts if len(ids) + 1 < engine.max_len]
        outs = (
            engine.generate_all([ids for _, ids in room], max_new, temperature=0.0, seed=seed)
            if room
            else []
        )
        rows = []
        for (text, _), new in zip(room, outs):
            if new and new[-1] == end_id:
                new = new[:-1]
            rows.append((text, tok.decode(new)))
        if is_main and rows:
            append_samples(out_dir / "samples.md", step, rows)

    return sample


# ---------------------------------------------------------------------------- main


def _check_args(args: argparse.Namespace) -> None:
    for name in ("batch_size", "grad_accum", "log_every"):
        if getattr(args, name) < 1:
            raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")
    if args.seq_len is not None and args.seq_len < 2:
        raise InputError(None, "--seq-len must be at least 2")
    if not 0 <= args.val_frac < 1:
        raise InputError(None, "--val-frac must be in [0, 1)")
    if args.lora_rank is not None and args.lora_rank < 1:
        raise InputError(None, "--lora-rank must be at least 1")
    parse_mix(args.mix)  # fail on a bad --mix before loading anything
    if args.merge and args.lora_rank is None:
        raise InputError(
            None, "--merge needs --lora-rank (full finetuning already saves full weights)"
        )


def parse_mix(items: list[str]) -> dict[str, int]:
    """['arithmetic=6000', 'chitchat=0'] -> {'arithmetic': 6000, 'chitchat': 0}, checked against
    the embedded mixture's tasks.

    >>> parse_mix(["arithmetic=6000"])
    {'arithmetic': 6000}
    """
    from gptlab.eval.tasks.mixture import DEFAULT_SIZES

    sizes: dict[str, int] = {}
    for item in items:
        name, _, count = item.partition("=")
        if name not in DEFAULT_SIZES:
            raise InputError(None, f"--mix {item!r}: unknown task; the mixture has {', '.join(DEFAULT_SIZES)}")
        if not count.isdigit():
            raise InputError(None, f"--mix {item!r}: give TASK=N with N a whole number of conversations")
        sizes[name] = int(count)
    return sizes


def _clear_stale(out: Path, lora: bool, merge: bool) -> None:
    """A fresh run removes the previous run's records and outputs of the other kind, so a
    folder never holds both an adapter and full weights from different runs."""
    from gptlab.model.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    stale = ["metrics.jsonl", "samples.md", "loss.png"]
    if lora and not merge:
        stale += ["model.safetensors", "config.json", "optimizer.pt", "train_state.json"]
    elif lora:
        stale += [ADAPTER_WEIGHTS, ADAPTER_CONFIG, "optimizer.pt", "train_state.json"]
    else:
        stale += [ADAPTER_WEIGHTS, ADAPTER_CONFIG]
    for name in stale:
        (out / name).unlink(missing_ok=True)


def _setup_lora(
    model: torch.nn.Module, args: argparse.Namespace, base: Path, out: Path
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Wrap the targets with adapters (all else frozen); the adapter-only view to train and
    the adapter_config.json contents."""
    from gptlab.common import print0
    from gptlab.model import lora

    alpha = args.lora_alpha if args.lora_alpha is not None else 2.0 * args.lora_rank
    try:
        wrapped = lora.apply_lora(
            model, args.lora_targets, args.lora_rank, alpha, args.lora_dropout
        )
    except ValueError as e:
        raise InputError(None, f"--lora-targets: {e}") from None
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print0(
        f"lora: rank {args.lora_rank}, alpha {alpha:g}, {len(wrapped)} layers, "
        f"{n_train:,} trainable of {model.num_params():,} params"
    )
    cfg = {
        # Relative to the output folder, so a run folder can move as a whole.
        "base": os.path.relpath(base.resolve(), out.resolve()),
        "rank": args.lora_rank,
        "alpha": alpha,
        "targets": lora.parse_targets(args.lora_targets),
        "dropout": args.lora_dropout,
    }
    return lora.AdapterOnly(model), cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_args(args)
    from gptlab.common import print0, run_dir, run_metadata, seed_everything
    from gptlab.data.sft_batches import (
        SFTBatches,
        gather_conversations,
        render_examples,
        split_val,
    )
    from gptlab.model import lora
    from gptlab.model.io import load_model, save_model
    from gptlab.tokenizer.bpe import Tokenizer
    from gptlab.tokenizer.special import PAD
    from gptlab.train import checkpoint as ckpt
    from gptlab.train.distributed import cleanup, init_distributed
    from gptlab.train.loop import Trainer, lm_loss
    from gptlab.train.plots import plot_losses
    from gptlab.train.tracker import build_tracker, truncate_metrics, truncate_samples

    base = args.base or run_dir(args.run, "base")
    out = args.out or run_dir(args.run, "sft")
    tok_dir = args.tokenizer or Path(base).parent / "tokenizer"
    if not Path(tok_dir).exists():
        raise InputError(tok_dir, "tokenizer folder not found (give --tokenizer)")
    use_lora = args.lora_rank is not None
    ckpt_dir = Path(out) / LORA_CHECKPOINT if use_lora else Path(out)
    lr = args.lr if args.lr is not None else (2e-3 if use_lora else 1e-3)
    max_steps = (
        args.steps if args.steps is not None else (None if args.time_budget else DEFAULT_MAX_STEPS)
    )

    dist = init_distributed(args.device)
    try:
        seed_everything(args.seed)
        model = load_model(base)
        tok = Tokenizer.load(tok_dir)
        if tok.vocab_size > model.config.vocab_size:
            raise InputError(
                tok_dir,
                f"tokenizer has {tok.vocab_size} tokens but the model only {model.config.vocab_size}",
            )
        seq_len = args.seq_len or model.config.max_seq_len
        if seq_len > model.config.max_seq_len:
            raise InputError(
                None,
                f"--seq-len {seq_len} exceeds the base model's max_seq_len={model.config.max_seq_len}",
            )

        convs = gather_conversations(
            args.mixture, args.data, args.fmt, args.lenient, args.seed, parse_mix(args.mix)
        )
        train_convs, val_convs = split_val(convs, args.val_frac, args.max_val, args.seed)
        train_ex = render_examples(tok, train_convs, seq_len + 1)
        val_ex = render_examples(tok, val_convs, seq_len + 1)
        pad_id = tok.token_id(PAD)
        try:
            batches = SFTBatches(
                train_ex,
                args.batch_size,
                seq_len,
                pad_id,
                seed=args.seed,
                rank=dist.rank,
                world_size=dist.world_size,
                device=dist.device,
            )
        except ValueError as e:
            raise InputError(None, str(e)) from None

        train_model, lora_cfg = model, None
        if use_lora:
            train_model, lora_cfg = _setup_lora(model, args, Path(base), Path(out))
        cfg = loop_config(args, max_steps=max_steps, lr=lr)
        evaluate = (
            make_evaluate(val_ex, args.batch_size, seq_len, pad_id, dist)
            if val_ex and cfg.eval_every
            else None
        )
        sample = None
        if val_convs and cfg.sample_every and args.num_samples > 0:
            sample = make_sample(
                tok,
                val_convs,
                args.num_samples,
                args.sample_tokens,
                args.seed,
                Path(out),
                dist.is_main,
            )

        resuming = args.resume and ckpt.has_checkpoint(ckpt_dir)
        if dist.is_main:
            Path(out).mkdir(parents=True, exist_ok=True)
            if not resuming:
                if ckpt.has_checkpoint(ckpt_dir):
                    print0(
                        f"note: starting fresh in {out}, replacing its checkpoint (use --resume to continue it)"
                    )
                _clear_stale(Path(out), use_lora, args.merge)
        stage_state = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        stage_state["data"] = [str(d) for d in args.data]
        tracker = build_tracker(
            args.tracker,
            out,
            dist.is_main,
            run_name=f"{args.run}-sft",
            config={"model": model.config.to_dict(), "train": asdict(cfg), "stage": stage_state},
        )
        meta = run_metadata(dist.device)
        meta.update(
            params=model.num_params(),
            base=str(base),
            lora=lora_cfg,
            world_size=dist.world_size,
            train_conversations=len(train_ex),
            val_conversations=len(val_ex),
        )
        print0(
            f"sft: {len(train_ex):,} train / {len(val_ex):,} val conversations, {batches.rows_per_epoch:,} rows "
            f"of {seq_len} tokens per epoch | {args.batch_size}x{seq_len} x {args.grad_accum} accum x "
            f"{dist.world_size} ranks per step | lr {lr:g} | device {dist.device}"
        )

        def on_resume(step: int) -> None:
            # The loop truncates ckpt_dir's metrics.jsonl; with LoRA ours live one level up.
            if dist.is_main:
                truncate_metrics(Path(out) / "metrics.jsonl", step)
                truncate_samples(Path(out) / "samples.md", step)

        trainer = Trainer(
            train_model,
            batches,
            lm_loss,
            cfg,
            out_dir=ckpt_dir,
            evaluate=evaluate,
            sample=sample,
            on_resume=on_resume,
            tracker=tracker,
            dist=dist,
            stage_state=stage_state,
            metadata=meta,
        )
        t0 = time.perf_counter()
        result = trainer.fit(resume=args.resume)
        if dist.is_main:
            if use_lora and args.merge:
                lora.merge_lora(model)
                save_model(out, model)
            elif use_lora:
                lora.save_adapter(out, model, lora_cfg)
            png = plot_losses(
                Path(out) / "metrics.jsonl", Path(out) / "loss.png", title=f"sft {args.run}"
            )
            summary = f"done: {result.step} steps, {time.perf_counter() - t0:.0f}s"
            if result.history:
                summary += f" | train loss {result.history[-1]['loss']:.4f}"
            vals = [r for r in _read(Path(out) / "metrics.jsonl") if r.get("val_loss") is not None]
            if vals:
                summary += f" | val loss {vals[0]['val_loss']:.4f} -> {vals[-1]['val_loss']:.4f}"
            print0(f"{summary} -> {out}" + (f" (curves: {png.name})" if png else ""))
    finally:
        cleanup()
    return 0


def _read(path: Path) -> list[dict]:
    from gptlab.train.tracker import read_metrics

    return read_metrics(path)


if __name__ == "__main__":
    raise SystemExit(main())

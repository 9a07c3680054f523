"""`gptlab pretrain`: next-token prediction on token shards, through the one training loop.

This stage supplies only what is particular to pretraining: packed (B, T) batches from the
shards, the cross-entropy loss, a validation hook (loss and bits per byte) and a sampling hook
that appends to `samples.md`, so one can watch noise turn into Shakespeare. Everything else
(accumulation, clipping, schedule, DDP, checkpoints, resume, logging) is `gptlab.train.loop`.

    gptlab pretrain --preset tiny                      # runs/tiny/shards -> runs/tiny/base
    gptlab pretrain --preset tiny --resume             # continue the same trajectory after a kill
    torchrun --nproc_per_node 2 -m gptlab pretrain     # data parallel (gloo on CPU, NCCL on GPU)

Bits per byte = sum of target-token nats / (ln 2 * sum of target-token UTF-8 byte lengths), over
tokens that stand for bytes: special tokens (byte length 0, e.g. <|endoftext|>) are left out of
both sums, as in nanochat, so the figure compares across tokenizers.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gptlab.errors import InputError
from gptlab.train.cli_args import (
    HelpFormatter,
    add_device_args,
    add_logging_args,
    add_schedule_args,
    loop_config,
)

if TYPE_CHECKING:
    from gptlab.train.distributed import DistInfo

DEFAULT_MAX_STEPS = 300
DEFAULT_PROMPTS = ("ROMEO:", "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gptlab pretrain",
        description="Pretrain a decoder-only transformer on token shards (next-token prediction). "
        "Writes model.safetensors, config.json, optimizer.pt, train_state.json, metrics.jsonl, "
        "samples.md and loss.png into the output folder.",
        formatter_class=HelpFormatter,
    )
    io = p.add_argument_group("paths")
    io.add_argument(
        "--run",
        default="tiny",
        help="run name: fills the default paths runs/<run>/{shards,tokenizer,base}",
    )
    io.add_argument(
        "--shards",
        type=Path,
        help="token shard folder with index.json (default: runs/<run>/shards)",
    )
    io.add_argument(
        "--tokenizer",
        type=Path,
        help="tokenizer folder, for bits per byte and samples (default: runs/<run>/tokenizer)",
    )
    io.add_argument("--out", type=Path, help="output stage folder (default: runs/<run>/base)")
    io.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in --out (same trajectory: data order, RNG, optimizer)",
    )

    m = p.add_argument_group("model (a preset or --depth, then any field overridden)")
    m.add_argument("--preset", default="tiny", help="named size: nano, tiny, small, d12, d20, d26")
    m.add_argument(
        "--depth",
        type=int,
        help="number of layers; derives width (64 per layer), heads and MLP size (overrides --preset)",
    )
    m.add_argument(
        "--n-embd",
        type=int,
        help="model width (MLP size follows at ~8/3 unless --intermediate-size)",
    )
    m.add_argument("--n-head", type=int, help="attention heads")
    m.add_argument(
        "--n-kv-head", type=int, help="key/value heads (< n-head: grouped-query attention)"
    )
    m.add_argument("--intermediate-size", type=int, help="SwiGLU hidden width")
    m.add_argument("--rope-theta", type=float, help="rotary embedding base")
    m.add_argument(
        "--tie-embeddings", action="store_true", help="share the input embedding and output head"
    )
    m.add_argument(
        "--dropout",
        type=float,
        help="residual dropout while training (e.g. 0.2 for ~1 MB corpora that overfit; default: "
        "the preset's)",
    )

    t = p.add_argument_group("training")
    t.add_argument(
        "--seq-len", type=int, default=256, help="tokens per row (T); also the model's max_seq_len"
    )
    t.add_argument(
        "--batch-size", type=int, default=16, help="rows per micro-batch per process (B)"
    )
    t.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    t.add_argument(
        "--max-steps",
        type=int,
        help=f"optimizer steps (default {DEFAULT_MAX_STEPS} unless --time-budget is given)",
    )
    t.add_argument(
        "--time-budget",
        type=float,
        help="stop after this many seconds of training (the LR schedule follows time)",
    )
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    t.add_argument("--embed-lr", type=float, help="embedding tables' peak LR (default: --lr)")
    t.add_argument(
        "--muon-lr",
        type=float,
        help="with --optimizer muon: the hidden matrices' LR with Keller's scale, e.g. 0.02 "
        "(default: --lr, scaled to match AdamW's update size)",
    )
    t.add_argument(
        "--muon-weight-decay", type=float, help="Muon's weight decay (default: --weight-decay)"
    )
    t.add_argument("--weight-decay", type=float, default=0.1, help="weight decay on matrices")
    t.add_argument(
        "--grad-clip", type=float, default=1.0, help="clip the gradient norm to this (0: off)"
    )
    t.add_argument(
        "--optimizer",
        choices=("adamw", "muon"),
        default="adamw",
        help="muon: Muon on hidden matrices, AdamW on the rest",
    )
    add_schedule_args(t, warmup=20)
    t.add_argument("--seed", type=int, default=1337, help="seeds the init and the data order")

    e = p.add_argument_group("evaluation, samples, checkpoints, logging")
    e.add_argument(
        "--eval-tokens", type=int, default=32768, help="validation tokens per evaluation"
    )
    e.add_argument(
        "--sample-every",
        type=int,
        default=100,
        help="append samples to samples.md every N steps (and at 0 and the end; 0: off)",
    )
    e.add_argument("--sample-tokens", type=int, default=80, help="new tokens per sample")
    e.add_argument(
        "--prompt",
        action="append",
        help=f"sample prompt after <|endoftext|> (repeatable; default: {list(DEFAULT_PROMPTS)})",
    )
    add_logging_args(e, eval_every=50, save_every=100)

    d = p.add_argument_group("device")
    add_device_args(d)
    d.add_argument(
        "--parallel",
        choices=("ddp", "fsdp"),
        default="ddp",
        help="multi-process strategy under torchrun",
    )
    return p


def _model_config(args: argparse.Namespace, vocab_size: int):
    from gptlab.model.config import config_from_depth, preset

    if args.depth is not None:
        cfg = config_from_depth(args.depth, vocab_size, args.seq_len)
    else:
        try:
            cfg = preset(args.preset, vocab_size, args.seq_len)
        except KeyError as e:
            raise InputError(None, f"--preset: {e.args[0]}") from None
    intermediate = args.intermediate_size
    if args.n_embd is not None and intermediate is None:
        intermediate = 32 * math.ceil(8 * args.n_embd / 3 / 32)  # keep the SwiGLU ratio
    n_head = args.n_head
    if args.n_embd is not None and n_head is None:
        n_head = max(1, args.n_embd // cfg.head_dim)  # keep the head size
    n_kv = (
        args.n_kv_head if args.n_kv_head is not None else (n_head if n_head is not None else None)
    )
    try:
        return cfg.with_overrides(
            n_embd=args.n_embd,
            n_head=n_head,
            n_kv_head=n_kv,
            intermediate_size=intermediate,
            rope_theta=args.rope_theta,
            tie_embeddings=True if args.tie_embeddings else None,
            dropout=args.dropout,
        )
    except ValueError as e:
        raise InputError(None, f"model flags: {e}") from None


def _load_tokenizer(args: argparse.Namespace, shard_tokenizer: str | None, vocab_size: int):
    """The tokenizer (for bpb and samples), or None with a note when there is none yet."""
    folder = args.tokenizer
    if folder is None:
        from gptlab.common import run_dir

        folder = run_dir(args.run, "tokenizer")
        if not folder.exists() and shard_tokenizer and Path(shard_tokenizer).exists():
            folder = Path(shard_tokenizer)
    if not Path(folder).exists():
        if args.tokenizer is not None:
            raise InputError(folder, "tokenizer folder not found")
        return None
    from gptlab.tokenizer.bpe import Tokenizer

    tok = Tokenizer.load(folder)
    if tok.vocab_size != vocab_size:
        raise InputError(
            folder,
            f"tokenizer has {tok.vocab_size} tokens but the shards say vocab_size={vocab_size}",
        )
    return tok


def make_evaluate(
    shards: Path,
    batch_size: int,
    seq_len: int,
    max_tokens: int,
    dist: DistInfo,
    byte_lengths: torch.Tensor | None,
) -> Callable:
    """Val loss (nats/token) and, with a tokenizer, bits per byte over the first `max_tokens` val tokens."""
    from gptlab.data.loader import eval_batches
    from gptlab.train.distributed import all_reduce_sum

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        dev = dist.device
        # nats, tokens, nats of byte-carrying targets, bytes: summed here, then across ranks
        sums = torch.zeros(4, dtype=torch.float64, device=dev)
        for x, y in eval_batches(
            shards, "val", batch_size, seq_len, max_tokens, dist.rank, dist.world_size, dev
        ):
            losses = model(x, y, reduction="none").double()
            sums[0] += losses.sum()
            sums[1] += y.numel()
            if byte_lengths is not None:
                nb = byte_lengths[y]
                sums[2] += (losses * (nb > 0)).sum()
                sums[3] += nb.sum()
        nats, count, nats_b, nbytes = all_reduce_sum(sums).tolist()
        out = {"val_loss": nats / max(count, 1)}
        if byte_lengths is not None and nbytes > 0:
            out["val_bpb"] = nats_b / (math.log(2) * nbytes)
        return out

    return evaluate


def make_sample(
    tok, out_dir: Path, prompts: list[str], max_new: int, seq_len: int, seed: int, is_main: bool
) -> Callable:
    """A hook that appends one continuation per prompt (after <|endoftext|>) to samples.md."""
    from gptlab.infer.sampling import generate
    from gptlab.train.tracker import append_samples

    def sample(model: torch.nn.Module, step: int) -> None:
        rows = []
        for text in prompts:
            ids = [tok.eot_id] + (tok.encode(text) if text else [])
            n = max(0, min(max_new, seq_len - len(ids)))
            # A fixed seed: the same random draws at every step, so the text changes only because
            # the model does.
            new = generate(
                model, ids, n, temperature=0.8, top_k=50, seed=seed, stop_ids={tok.eot_id}
            )
            if new and new[-1] == tok.eot_id:
                new = new[:-1]
            rows.append((text or "<|endoftext|>", text + tok.decode(new)))
        if is_main:
            append_samples(out_dir / "samples.md", step, rows)

    return sample


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gptlab.common import print0, run_dir, run_metadata, seed_everything
    from gptlab.data.loader import PackedLoader
    from gptlab.data.shards import ShardIndex
    from gptlab.model.gpt import GPT
    from gptlab.model.io import load_config
    from gptlab.train import checkpoint as ckpt
    from gptlab.train.distributed import cleanup, init_distributed
    from gptlab.train.loop import Trainer, lm_loss
    from gptlab.train.plots import plot_losses
    from gptlab.train.tracker import build_tracker, truncate_samples

    for name in ("seq_len", "batch_size", "grad_accum", "log_every"):
        if getattr(args, name) < 1:
            raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")
    shards = args.shards or run_dir(args.run, "shards")
    out = args.out or run_dir(args.run, "base")
    info = ShardIndex.load(shards)
    max_steps = (
        args.max_steps
        if args.max_steps is not None
        else (None if args.time_budget else DEFAULT_MAX_STEPS)
    )

    dist = init_distributed(args.device)
    try:
        seed_everything(args.seed)
        resuming = args.resume and ckpt.has_checkpoint(out)
        if resuming:
            if dist.is_main:
                ckpt.recover(out)
            mcfg = load_config(out)  # the architecture is the checkpoint's, whatever the flags say
            if mcfg.max_seq_len != args.seq_len:
                raise InputError(
                    out / "config.json",
                    f"checkpoint has max_seq_len={mcfg.max_seq_len}; pass --seq-len {mcfg.max_seq_len}",
                )
        else:
            mcfg = _model_config(args, info.vocab_size)
        model = GPT(mcfg)
        tok = _load_tokenizer(args, info.tokenizer, info.vocab_size)

        cfg = loop_config(
            args, max_steps=max_steps, lr=args.lr, embed_lr=args.embed_lr, muon_lr=args.muon_lr,
            muon_weight_decay=args.muon_weight_decay, parallel=args.parallel,
        )
        train = PackedLoader(
            shards,
            "train",
            args.batch_size,
            args.seq_len,
            seed=args.seed,
            rank=dist.rank,
            world_size=dist.world_size,
            device=dist.device,
        )

        evaluate = None
        val_windows = (info.tokens("val") - 1) // args.seq_len if "val" in info.splits else 0
        if cfg.eval_every and val_windows >= dist.world_size:
            lengths = None
            if tok is not None:
                lengths = torch.tensor(
                    tok.token_byte_lengths(), dtype=torch.float64, device=dist.device
                )
            eval_bs = min(args.batch_size, val_windows // dist.world_size)
            evaluate = make_evaluate(shards, eval_bs, args.seq_len, args.eval_tokens, dist, lengths)
        elif cfg.eval_every:
            print0(f"note: no usable 'val' split in {shards}/index.json: skipping validation")

        sample = None
        if cfg.sample_every and tok is not None:
            prompts = list(args.prompt or DEFAULT_PROMPTS)
            sample = make_sample(
                tok, out, prompts, args.sample_tokens, args.seq_len, args.seed, dist.is_main
            )
        elif cfg.sample_every:
            print0("note: no tokenizer found (--tokenizer): no samples, no bits per byte")

        if dist.is_main:
            Path(out).mkdir(parents=True, exist_ok=True)
            if not resuming:
                if ckpt.has_checkpoint(out):
                    print0(
                        f"note: starting fresh in {out}, replacing its checkpoint (use --resume to continue it)"
                    )
                for stale in ("metrics.jsonl", "samples.md", "loss.png"):
                    (Path(out) / stale).unlink(missing_ok=True)
        stage_state = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        tracker = build_tracker(
            args.tracker,
            out,
            dist.is_main,
            run_name=str(args.run),
            config={"model": mcfg.to_dict(), "train": asdict(cfg), "stage": stage_state},
        )
        meta = run_metadata(dist.device)
        meta.update(
            params=model.num_params(),
            flops_per_token=model.flops_per_token(),
            world_size=dist.world_size,
        )
        print0(
            f"model: {mcfg.n_layer} layers, {mcfg.n_embd} wide, {mcfg.n_head} heads "
            f"({mcfg.n_kv_head} kv), vocab {mcfg.vocab_size}, {model.num_params() / 1e6:.2f}M params | "
            f"device {dist.device} | {args.batch_size}x{args.seq_len} tokens x {args.grad_accum} accum "
            f"x {dist.world_size} ranks = {args.batch_size * args.seq_len * args.grad_accum * dist.world_size:,} tokens/step"
        )

        on_resume = (
            (lambda step: truncate_samples(Path(out) / "samples.md", step))
            if dist.is_main
            else None
        )
        trainer = Trainer(
            model,
            train,
            lm_loss,
            cfg,
            out_dir=out,
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
            png = plot_losses(
                Path(out) / "metrics.jsonl", Path(out) / "loss.png", title=f"pretrain {args.run}"
            )
            last_val = _last_val(Path(out) / "metrics.jsonl")
            tokens = (
                result.step * args.batch_size * args.seq_len * args.grad_accum * dist.world_size
            )
            summary = (
                f"done: {result.step} steps, {tokens:,} tokens, {time.perf_counter() - t0:.0f}s"
            )
            if result.history:
                summary += f" | train loss {result.history[-1]['loss']:.4f}"
            summary += "".join(f" | {k} {v:.4f}" for k, v in last_val.items())
            print0(f"{summary} -> {out}" + (f" (curves: {png.name})" if png else ""))
    finally:
        cleanup()
    return 0


def _last_val(metrics_path: Path) -> dict[str, float]:
    from gptlab.train.tracker import read_metrics

    out: dict[str, float] = {}
    for r in read_metrics(metrics_path):
        for k in ("val_loss", "val_bpb"):
            if r.get(k) is not None:
                out[k] = r[k]
    return out


if __name__ == "__main__":
    raise SystemExit(main())

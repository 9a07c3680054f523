"""`gptlab pretrain`: next-token prediction on token shards, through the one training loop.

This stage supplies only what is particular to pretraining: packed (B, T) batches from the
shards, the cross-entropy loss, a validation hook (loss and bits per byte) and a sampling hook
that appends to `samples.md`, so one can watch noise turn into Shakespeare. Everything else
(accumulation, clipping, schedule, DDP, checkpoints, resume, logging) is `gptlab.train.loop`.

    gptlab pretrain --preset tiny                      # runs/tiny/shards -> runs/tiny/base
    gptlab pretrain --preset tiny --resume             # continue the same trajectory after a kill
    torchrun --nproc_per_node 2 -m gptlab -- pretrain --run tiny   # data parallel (gloo on CPU, NCCL on GPU)

(`--` ends torchrun's options: it would take `--run` for an abbreviation of its `--run-path`.)

Bits per byte = sum of target-token nats / (ln 2 * sum of target-token UTF-8 byte lengths), over
tokens that stand for bytes: special tokens (byte length 0, e.g. <|endoftext|>) are left out of
both sums, as in nanochat, so the figure compares across tokenizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from gptlab.commandline import parse, recipe_names
from gptlab.common import print0, run_dir
from gptlab.data.loader import PackedLoader, eval_batches
from gptlab.data.shards import ShardIndex
from gptlab.errors import InputError
from gptlab.infer.sampling import generate
from gptlab.model.config import ModelConfig, config_from_depth, preset
from gptlab.model.gpt import GPT
from gptlab.model.io import load_config
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.tokenizer.protocol import TokenizerLike
from gptlab.train.distributed import DistInfo, all_reduce_sum
from gptlab.train.loop import lm_loss
from gptlab.train.stage import LoopArgs, StageParts, run_stage
from gptlab.train.tracker import append_samples

DEFAULT_STEPS = 300


@dataclass
class PretrainConfig(LoopArgs):
    """Pretrain a decoder-only transformer on token shards (next-token prediction). Writes
    model.safetensors, config.json, optimizer.pt, train_state.json, run.yaml, metrics.jsonl,
    samples.md and loss.png into --out (default runs/<run>/base)."""

    shards: Path | None = None  # token shard folder with index.json (default: runs/<run>/shards)
    tokenizer: Path | None = None  # tokenizer folder, for bits per byte and samples (default: runs/<run>/tokenizer)
    preset: str = "tiny"  # named size: nano, tiny, small, d12, d20, d26; or a recipe (size + training settings): shakespeare-char
    depth: int | None = None  # layers; derives width (64 per layer), heads and MLP size (overrides --preset)
    n_embd: int | None = None  # model width (the MLP follows at ~8/3 unless --intermediate-size)
    n_head: int | None = None  # attention heads
    n_kv_head: int | None = None  # key/value heads (fewer than --n-head: grouped-query attention)
    intermediate_size: int | None = None  # SwiGLU hidden width
    rope_theta: float | None = None  # rotary embedding base
    tie_embeddings: bool = False  # share the input embedding and the output head
    dropout: float | None = None  # residual dropout while training (e.g. 0.2 for ~1 MB corpora; default: the preset's)
    seq_len: int = 256  # tokens per row (T); also the model's max_seq_len
    batch_size: int = 16  # rows per micro-batch per process (B)
    lr: float = 2e-3  # peak learning rate
    warmup: int = 20  # linear LR warmup, optimizer steps
    embed_lr: float | None = None  # embedding tables' peak LR (default: --lr)
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon on hidden matrices, AdamW on the rest
    muon_lr: float | None = None  # Muon's LR on Keller's scale, e.g. 0.02 (default: --lr, scaled to AdamW's update size)
    muon_weight_decay: float | None = None  # Muon's weight decay (default: --weight-decay)
    eval_tokens: int = 32768  # validation tokens per evaluation
    sample_every: int | None = 100  # append samples to samples.md every N steps, and at 0 and the end (None: off)
    sample_tokens: int = 80  # new tokens per sample
    prompts: tuple[str, ...] = ("ROMEO:", "")  # sample prompts, each after <|endoftext|>
    parallel: Literal["ddp", "fsdp"] = "ddp"  # multi-process strategy under torchrun


def model_config(cfg: PretrainConfig, vocab_size: int) -> ModelConfig:
    """The preset (or --depth), then any field the flags set."""
    if cfg.depth is not None:
        mcfg = config_from_depth(cfg.depth, vocab_size, cfg.seq_len)
    else:
        try:
            mcfg = preset(cfg.preset, vocab_size, cfg.seq_len)
        except KeyError as e:
            recipes = ", ".join(recipe_names("pretrain"))
            raise InputError(None, f"--preset: {e.args[0]}; or a recipe: {recipes}") from None
    intermediate = cfg.intermediate_size
    if cfg.n_embd is not None and intermediate is None:
        intermediate = 32 * math.ceil(8 * cfg.n_embd / 3 / 32)  # keep the SwiGLU ratio
    n_head = cfg.n_head
    if cfg.n_embd is not None and n_head is None:
        n_head = max(1, cfg.n_embd // mcfg.head_dim)  # keep the head size
    n_kv = cfg.n_kv_head if cfg.n_kv_head is not None else n_head
    try:
        return mcfg.with_overrides(
            n_embd=cfg.n_embd, n_head=n_head, n_kv_head=n_kv, intermediate_size=intermediate,
            rope_theta=cfg.rope_theta, tie_embeddings=True if cfg.tie_embeddings else None,
            dropout=cfg.dropout,
        )
    except ValueError as e:
        raise InputError(None, f"model flags: {e}") from None


def run_tokenizer(cfg: PretrainConfig, shard_tokenizer: str | None, vocab_size: int) -> TokenizerLike | None:
    """The tokenizer (for bpb and samples), or None when there is none yet."""
    folder = cfg.tokenizer
    if folder is None:
        folder = run_dir(cfg.run, "tokenizer")
        if not folder.exists() and shard_tokenizer and Path(shard_tokenizer).exists():
            folder = Path(shard_tokenizer)
    if not Path(folder).exists():
        if cfg.tokenizer is not None:
            raise InputError(folder, "tokenizer folder not found")
        return None
    tok = load_tokenizer(folder)
    if tok.vocab_size != vocab_size:
        raise InputError(
            folder, f"tokenizer has {tok.vocab_size} tokens but the shards say vocab_size={vocab_size}"
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


def build(cfg: PretrainConfig, shards: Path, out: Path, dist: DistInfo, resuming: bool) -> StageParts:
    """The model (fresh, or the checkpoint's architecture), packed batches and the hooks."""
    info = ShardIndex.load(shards)
    if resuming:
        mcfg = load_config(out)  # the architecture is the checkpoint's, whatever the flags say
        if mcfg.max_seq_len != cfg.seq_len:
            raise InputError(
                out / "config.json",
                f"checkpoint has max_seq_len={mcfg.max_seq_len}; pass --seq-len {mcfg.max_seq_len}",
            )
    else:
        mcfg = model_config(cfg, info.vocab_size)
    model = GPT(mcfg)
    tok = run_tokenizer(cfg, info.tokenizer, info.vocab_size)
    train = cfg.loop_config(
        DEFAULT_STEPS, optimizer=cfg.optimizer, embed_lr=cfg.embed_lr, muon_lr=cfg.muon_lr,
        muon_weight_decay=cfg.muon_weight_decay, parallel=cfg.parallel, sample_every=cfg.sample_every,
    )
    batches = PackedLoader(
        shards, "train", cfg.batch_size, cfg.seq_len, seed=cfg.seed, rank=dist.rank,
        world_size=dist.world_size, device=dist.device,
    )
    evaluate = None
    val_windows = (info.tokens("val") - 1) // cfg.seq_len if "val" in info.splits else 0
    if train.eval_every and val_windows >= dist.world_size:
        lengths = None
        if tok is not None:
            lengths = torch.tensor(tok.token_byte_lengths(), dtype=torch.float64, device=dist.device)
        eval_bs = min(cfg.batch_size, val_windows // dist.world_size)
        evaluate = make_evaluate(shards, eval_bs, cfg.seq_len, cfg.eval_tokens, dist, lengths)
    elif train.eval_every:
        print0(f"note: no usable 'val' split in {shards}/index.json: skipping validation")
    sample = None
    if train.sample_every and tok is not None:
        sample = make_sample(tok, out, list(cfg.prompts), cfg.sample_tokens, cfg.seq_len, cfg.seed, dist.is_main)
    elif train.sample_every:
        print0("note: no tokenizer found (--tokenizer): no samples, no bits per byte")
    rows = cfg.batch_size * cfg.grad_accum * dist.world_size
    describe = (
        f"model: {mcfg.n_layer} layers, {mcfg.n_embd} wide, {mcfg.n_head} heads ({mcfg.n_kv_head} kv), "
        f"vocab {mcfg.vocab_size}, {model.num_params() / 1e6:.2f}M params | device {dist.device} | "
        f"{cfg.batch_size}x{cfg.seq_len} tokens x {cfg.grad_accum} accum x {dist.world_size} ranks = "
        f"{rows * cfg.seq_len:,} tokens/step"
    )
    return StageParts(
        model, batches, lm_loss, train, describe, evaluate=evaluate, sample=sample,
        metadata={"params": model.num_params(), "flops_per_token": model.flops_per_token()},
        tracker_config={"model": mcfg.to_dict()},
        finish=lambda result: f" | {result.step * rows * cfg.seq_len:,} tokens",
    )


def run(cfg: PretrainConfig) -> int:
    for name in ("seq_len", "batch_size"):
        if getattr(cfg, name) < 1:
            raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")
    shards = cfg.shards or run_dir(cfg.run, "shards")
    out = cfg.out or run_dir(cfg.run, "base")
    run_stage(cfg, "pretrain", out, lambda dist, resuming: build(cfg, shards, out, dist, resuming))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(PretrainConfig, argv, "gptlab pretrain"))

"""`gptlab sft`: supervised finetuning on conversations (full weights or LoRA), through the one loop.

What is particular to SFT is only the data and what is saved: conversations are rendered with
the chat template (gptlab.tokenizer.chat), packed into (B, T) rows whose targets are -1 except
on the assistant's own tokens (gptlab.data.sft_batches), and the loss is the model's mean
cross-entropy over those tokens. A few percent of the conversations are held out: their
assistant-token loss is `val_loss`, and their prompts are answered into `samples.md` by the
inference engine (KV cache, batched, stops at `<|end|>`, calculator calls run for real; see
gptlab.stages.sft_hooks).

    gptlab sft --from runs/tiny/base                         # embedded mixture -> runs/tiny/sft
    gptlab sft --from runs/tiny/base --data chats.jsonl --mixture none
    gptlab sft --from runs/tiny/base --mix arithmetic 6000 chitchat 0
    gptlab sft --from runs/tiny/base --lora-rank 8           # adapter only: adapter.safetensors
    gptlab sft --from runs/tiny/base --lora-rank 8 --merge   # merged full weights
    gptlab sft --from runs/tiny/base --resume                # same trajectory after a kill
    gptlab sft --config runs/tiny/sft/run.yaml --lr 3e-4     # a saved run, one field changed

Output folder: full finetuning writes the usual checkpoint (model.safetensors, config.json,
optimizer.pt, train_state.json). LoRA writes `adapter.safetensors` + `adapter_config.json`
(base folder, rank, alpha, targets; `gptlab.model.lora.load_model_with_adapter` loads it), or
with --merge the merged model.safetensors + config.json; its resumable checkpoint (adapter +
optimizer state only, never a copy of the frozen base) lives in `<out>/checkpoint/`. Both write
run.yaml, metrics.jsonl, samples.md and loss.png.

The embedded mixture is built here, not in gptlab.data, because its conversations come from the
evaluation tasks (gptlab.tasks): the data layer stays below eval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from gptlab.commandline import parse
from gptlab.common import print0, run_dir
from gptlab.data.sft_batches import SFTBatches, load_conversation_files, render_examples, split_val
from gptlab.errors import InputError
from gptlab.model import lora
from gptlab.model.io import load_model, save_model
from gptlab.options import FromPath
from gptlab.stages.sft_hooks import make_evaluate, make_sample
from gptlab.tasks.mixture import DEFAULT_SIZES, sft_mixture
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.tokenizer.protocol import TokenizerLike
from gptlab.train import checkpoint
from gptlab.train.distributed import DistInfo
from gptlab.train.loop import TrainResult, masked_lm_loss
from gptlab.train.stage import LoopArgs, StageParts, run_stage

DEFAULT_STEPS = 300
RECORDS = ("metrics.jsonl", "samples.md", "loss.png")
FULL_WEIGHTS = ("model.safetensors", "config.json", "optimizer.pt", "train_state.json")


@dataclass
class SFTConfig(LoopArgs):
    """Supervised finetuning of a base model on conversations (loss on the assistant's tokens
    only), in full or with LoRA adapters. Writes into --out (default runs/<run>/sft)."""

    from_: FromPath = None  # base model folder (default: runs/<run>/base)
    tokenizer: Path | None = None  # tokenizer folder (default: the base folder's sibling 'tokenizer')
    data: tuple[str, ...] = ()  # conversations: JSONL/JSON/parquet files or hub datasets (hf:NAME[:CONFIG][@split=..,limit=N]) of OpenAI messages, ShareGPT or Alpaca records, space-separated
    fmt: Literal["auto", "messages", "sharegpt", "alpaca"] = "auto"  # record format of --data files
    lenient: bool = False  # skip (and count) malformed records instead of stopping
    mixture: Literal["default", "none"] = "default"  # the embedded SFT mixture (chitchat, play questions, arithmetic with the calculator, identity) added to --data; 'none' trains on --data alone
    mix: dict[str, int] = field(default_factory=dict)  # conversations per task of the embedded mixture, e.g. --mix arithmetic 6000 chitchat 0 (the others keep their defaults)
    val_frac: float = 0.03  # fraction of conversations held out for val loss and samples
    max_val: int = 200  # at most this many held-out conversations
    batch_size: int = 8  # rows per micro-batch per process (B)
    seq_len: int | None = None  # tokens per row (T); longer conversations are cut (default: the base's max_seq_len)
    lr: float | None = None  # peak learning rate (default: 1e-3 full, 2e-3 LoRA)
    warmup: int = 10  # linear LR warmup, optimizer steps
    weight_decay: float = 0.0  # decoupled weight decay on matrices
    dropout: float | None = None  # residual dropout while finetuning (None: the base's own; 0: off)
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon on hidden matrices
    seed: int = 1337  # seeds the mixture, the val split, LoRA init and data order
    lora_rank: int | None = None  # train rank-r LoRA adapters instead of all weights (None: full finetuning)
    lora_alpha: float | None = None  # adapter scale numerator: update = alpha/r * B A (default: 2 * rank)
    lora_targets: str = "all"  # comma-separated linear layers to adapt (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj) or 'all'
    lora_dropout: float = 0.0  # dropout on the adapter's input
    merge: bool = False  # with --lora-rank: save merged full weights instead of the adapter
    lora_frozen_rows: bool = False  # with --lora-rank: keep every embedding row frozen (by default the rows of the special tokens the conversations use train beside the adapters: tool and chat tokens a base model never saw)
    sample_every: int | None = 100  # answer held-out prompts into samples.md every N steps, and at 0 and the end (None: off)
    num_samples: int = 4  # held-out prompts answered per sampling
    sample_tokens: int = 64  # max new tokens per sampled answer

    @property
    def peak_lr(self) -> float:
        """--lr, or the default of the kind of finetuning (LoRA's adapters start at zero: higher)."""
        if self.lr is not None:
            return self.lr
        return 2e-3 if self.lora_rank is not None else 1e-3


def check_config(cfg: SFTConfig) -> None:
    """Fail on values SFT cannot run with before loading anything."""
    if cfg.batch_size < 1:
        raise InputError(None, "--batch-size must be at least 1")
    if cfg.seq_len is not None and cfg.seq_len < 2:
        raise InputError(None, "--seq-len must be at least 2")
    if not 0 <= cfg.val_frac < 1:
        raise InputError(None, "--val-frac must be in [0, 1)")
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        raise InputError(None, f"--dropout {cfg.dropout}: must be in [0, 1)")
    if cfg.lora_rank is not None and cfg.lora_rank < 1:
        raise InputError(None, "--lora-rank must be at least 1")
    if cfg.sample_every is not None and cfg.sample_every < 1:
        raise InputError(None, "--sample-every must be positive (None: off)")
    check_mix(cfg.mix)
    if cfg.merge and cfg.lora_rank is None:
        raise InputError(
            None, "--merge needs --lora-rank (full finetuning already saves full weights)"
        )


def check_mix(sizes: dict[str, int]) -> dict[str, int]:
    """`sizes`, checked against the embedded mixture's tasks.

    >>> check_mix({"arithmetic": 6000})
    {'arithmetic': 6000}
    """
    for name, count in sizes.items():
        if name not in DEFAULT_SIZES:
            raise InputError(None, f"--mix {name}: unknown task; the mixture has {', '.join(DEFAULT_SIZES)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InputError(None, f"--mix {name} {count}: give TASK N with N a whole number of conversations")
    return dict(sizes)


def gather_conversations(
    mixture: str,
    files: Sequence[str | Path],
    fmt: str = "auto",
    lenient: bool = False,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
) -> list[list[dict]]:
    """The embedded SFT mixture (mixture='default'; 'none' for none; `sizes` overrides some of its
    tasks' counts) followed by every file's conversations (bad records raise InputError file:line)."""
    convs: list[list[dict]] = []
    if mixture == "default":
        convs += sft_mixture("train", {**DEFAULT_SIZES, **(sizes or {})}, seed)
        print0(f"data: embedded mixture, {len(convs):,} conversations")
    convs += load_conversation_files(files, fmt, lenient)
    if not convs:
        raise InputError(None, "no conversations: give --data FILE or use the default mixture")
    return convs


def stale_outputs(use_lora: bool, merge: bool) -> tuple[str, ...]:
    """What a fresh run removes: the previous run's records and outputs of the other kind, so a
    folder never holds both an adapter and full weights from different runs."""
    adapter = (lora.ADAPTER_WEIGHTS, lora.ADAPTER_CONFIG)
    if use_lora and not merge:
        return RECORDS + FULL_WEIGHTS
    if use_lora:
        return RECORDS + adapter + ("optimizer.pt", "train_state.json")
    return RECORDS + adapter


def special_ids_used(tok: TokenizerLike, examples: list[tuple[list[int], list[int]]]) -> list[int]:
    """The special tokens the rendered conversations contain (their rows train beside LoRA)."""
    return sorted({i for ids, _ in examples for i in ids if tok.is_special(i)})


def setup_lora(
    model: torch.nn.Module, cfg: SFTConfig, base: Path, out: Path, token_rows: list[int]
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Wrap the targets with adapters (all else frozen but `token_rows`); the adapter-only view
    to train and the adapter_config.json contents."""
    rank = cfg.lora_rank
    assert rank is not None
    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2.0 * rank
    try:
        wrapped = lora.apply_lora(model, cfg.lora_targets, rank, alpha, cfg.lora_dropout, token_rows)
    except ValueError as e:
        raise InputError(None, f"--lora-targets: {e}") from None
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print0(
        f"lora: rank {rank}, alpha {alpha:g}, {len(wrapped)} layers + {len(token_rows)} token rows, "
        f"{n_train:,} trainable of {model.num_params():,} params"
    )
    adapter_cfg = {
        # Relative to the output folder, so a run folder can move as a whole.
        "base": os.path.relpath(base.resolve(), out.resolve()),
        "rank": rank,
        "alpha": alpha,
        "targets": lora.parse_targets(cfg.lora_targets),
        "dropout": cfg.lora_dropout,
    }
    return lora.AdapterOnly(model), adapter_cfg


def load_base(cfg: SFTConfig, base: Path, tok_dir: Path) -> tuple[Any, TokenizerLike, int]:
    """(the base model, its tokenizer, the row length T), checked against each other."""
    model = load_model(base)
    if cfg.dropout is not None:
        model.set_dropout(cfg.dropout)
    tok = load_tokenizer(tok_dir)
    if tok.vocab_size > model.config.vocab_size:
        raise InputError(
            tok_dir,
            f"tokenizer has {tok.vocab_size} tokens but the model only {model.config.vocab_size}",
        )
    seq_len = cfg.seq_len or model.config.max_seq_len
    if seq_len > model.config.max_seq_len:
        raise InputError(
            None,
            f"--seq-len {seq_len} exceeds the base model's max_seq_len={model.config.max_seq_len}",
        )
    return model, tok, seq_len


def make_finish(cfg: SFTConfig, model: Any, out: Path, adapter_cfg: dict[str, Any] | None):
    """After training (rank 0): with LoRA, save the adapter or the merged weights into --out."""

    def finish(result: TrainResult) -> str:
        if cfg.lora_rank is not None and cfg.merge:
            lora.merge_lora(model)
            save_model(out, model)
        elif cfg.lora_rank is not None:
            lora.save_adapter(out, model, adapter_cfg)
        return ""  # the summary's val_loss line is run_stage's

    return finish


def build(cfg: SFTConfig, base: Path, tok_dir: Path, out: Path, dist: DistInfo, resuming: bool) -> StageParts:
    """The base model (LoRA-wrapped with --lora-rank), packed conversation batches and the hooks.
    Called after seeding: the mixture, the val split, the LoRA init and the data order follow --seed."""
    model, tok, seq_len = load_base(cfg, base, tok_dir)
    convs = gather_conversations(cfg.mixture, cfg.data, cfg.fmt, cfg.lenient, cfg.seed, check_mix(cfg.mix))
    train_convs, val_convs = split_val(convs, cfg.val_frac, cfg.max_val, cfg.seed)
    train_ex = render_examples(tok, train_convs, seq_len + 1)
    val_ex = render_examples(tok, val_convs, seq_len + 1)
    pad_id = tok.pad_id
    try:
        batches = SFTBatches(
            train_ex, cfg.batch_size, seq_len, pad_id, seed=cfg.seed, rank=dist.rank,
            world_size=dist.world_size, device=dist.device,
        )
    except ValueError as e:
        raise InputError(None, str(e)) from None
    train_model, adapter_cfg = model, None
    if cfg.lora_rank is not None:
        rows = [] if cfg.lora_frozen_rows else special_ids_used(tok, train_ex)
        train_model, adapter_cfg = setup_lora(model, cfg, base, out, rows)
    train = cfg.loop_config(
        DEFAULT_STEPS, lr=cfg.peak_lr, optimizer=cfg.optimizer, sample_every=cfg.sample_every
    )
    evaluate = None
    if val_ex and train.eval_every:
        evaluate = make_evaluate(val_ex, cfg.batch_size, seq_len, pad_id, dist)
    sample = None
    if val_convs and train.sample_every and cfg.num_samples > 0:
        sample = make_sample(tok, val_convs, cfg.num_samples, cfg.sample_tokens, cfg.seed, out, dist.is_main)
    describe = (
        f"sft: {len(train_ex):,} train / {len(val_ex):,} val conversations, {batches.rows_per_epoch:,} rows "
        f"of {seq_len} tokens per epoch | {cfg.batch_size}x{seq_len} x {cfg.grad_accum} accum x "
        f"{dist.world_size} ranks per step | lr {cfg.peak_lr:g} | device {dist.device}"
    )
    return StageParts(
        train_model, batches, masked_lm_loss, train, describe, evaluate=evaluate, sample=sample,
        metadata={
            "params": model.num_params(), "base": str(base), "lora": adapter_cfg,
            "train_conversations": len(train_ex), "val_conversations": len(val_ex),
        },
        tracker_config={"model": model.config.to_dict()},
        stale=stale_outputs(cfg.lora_rank is not None, cfg.merge),
        finish=make_finish(cfg, model, out, adapter_cfg),
    )


def run(cfg: SFTConfig) -> int:
    check_config(cfg)
    base = Path(cfg.from_ or run_dir(cfg.run, "base"))
    out = Path(cfg.out or run_dir(cfg.run, "sft"))
    tok_dir = Path(cfg.tokenizer or base.parent / "tokenizer")
    if not tok_dir.exists():
        raise InputError(tok_dir, "tokenizer folder not found (give --tokenizer)")
    ckpt_dir = out / checkpoint.SUBFOLDER if cfg.lora_rank is not None else out
    run_stage(
        cfg, "sft", out, lambda dist, resuming: build(cfg, base, tok_dir, out, dist, resuming),
        checkpoint_dir=ckpt_dir,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(SFTConfig, argv, "gptlab sft"))


if __name__ == "__main__":
    raise SystemExit(main())

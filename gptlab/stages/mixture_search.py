"""`gptlab data mixture-search`: learn the sources' mixture weights with DoReMi (Xie et al. 2023).

    gptlab data mixture-search --run tiny       # runs/tiny/data + tokenizer -> runs/tiny/mixture/
    gptlab data prepare --run tiny --source shakespeare chitchat --weights runs/tiny/mixture/weights.json

A command of its own rather than a `prepare` option: it needs a tokenizer and trains two models,
while `prepare` is text in, text out (and runs before the tokenizer exists). It reads the
prepared `train.jsonl` / `val.jsonl` (each line names its `source`), tokenizes each source into
its own shards, trains a reference model and then a group-DRO proxy (`gptlab.data.doremi`), both
through the one training loop, and writes into `--out`:

    weights.json   {source: weight} for `gptlab data prepare --weights` (character shares)
    doremi.json    token weights (averaged and final), per-step history, settings, and each
                   model's held-out loss per source
    weights.png    how the weights and excess losses moved over the steps

DoReMi's weights are shares of training *tokens*; `prepare` shares out *characters*, so
weights.json holds alpha_i * (chars per token of source i), renormalised: a run prepared with it
sees the learned token shares. The paper trains the final model on the learned weights; the
proxy and reference are small models (`--preset nano` here). The module sits in `stages/`, not
`data/`, because it trains models: `data/` is below `train/` in the layers (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from gptlab.commandline import parse
from gptlab.common import pick_device, run_dir, seed_everything
from gptlab.data.doremi import DomainBatches, DoReMiLoss, mixture_loss, rows_per_domain
from gptlab.data.jsonl import iter_jsonl_records
from gptlab.data.loader import eval_batches
from gptlab.data.shards import ShardIndex, write_shards
from gptlab.errors import InputError
from gptlab.fileio import atomic_write_json
from gptlab.model.config import preset
from gptlab.model.gpt import GPT
from gptlab.options import DeviceArgs, RunArgs
from gptlab.tokenizer.loading import load_tokenizer
from gptlab.train.loop import LossFn, TrainConfig, Trainer


@dataclass
class MixtureSearchConfig(RunArgs, DeviceArgs):
    """Learn the sources' mixture weights with DoReMi: train a small reference model, then a small
    proxy with group DRO over the sources; write weights.json for `gptlab data prepare --weights`."""

    data: Path | None = None  # folder with train.jsonl (and val.jsonl) from `gptlab data prepare` (default: runs/<run>/data)
    tokenizer: Path | None = None  # tokenizer folder (default: runs/<run>/tokenizer)
    out: Path | None = None  # output folder (default: runs/<run>/mixture)
    preset: str = "nano"  # size of the reference and proxy models (nano, tiny, small, ...)
    steps: int = 200  # optimizer steps of each model
    batch_size: int = 16  # rows per step (the proxy's are split evenly over the sources)
    seq_len: int = 256  # tokens per row
    lr: float = 3e-3  # peak AdamW learning rate of both models (cosine, warmup 10 steps)
    eta: float = 1.0  # step size of the exponentiated-gradient weight update (the paper's 1)
    smoothing: float = 1e-3  # mix this much of the uniform distribution into the weights each step (the paper's c)
    reference: Literal["uniform", "natural"] = "uniform"  # the reference model's mixture: equal rows per source, or rows by token count
    eval_tokens: int = 16384  # held-out tokens per source for the final per-source losses
    seed: int = 1337  # seeds both models' init and the data order


def read_sources(path: Path) -> dict[str, list[str]]:
    """A prepared JSONL file's texts grouped by their `source` field, sources in first-seen order."""
    groups: dict[str, list[str]] = {}
    for rec in iter_jsonl_records(path, ("text", "source")):
        groups.setdefault(rec["source"], []).append(rec["text"])
    return groups


def tokenize_sources(data: Path, tok, out: Path) -> tuple[list[str], list[Path], dict[str, dict]]:
    """Each source's train (and val) documents into `out/<source>/`: (names, folders, counts)."""
    train = read_sources(data / "train.jsonl")
    val = read_sources(data / "val.jsonl") if (data / "val.jsonl").exists() else {}
    if len(train) < 2:
        raise InputError(data / "train.jsonl", f"needs 2+ sources to weigh, has {list(train)}")
    folders, counts = [], {}
    for name, texts in train.items():
        splits = {"train": texts}
        if val.get(name):
            splits["val"] = val[name]
        index = write_shards(splits, tok, out / name, progress=False)
        folders.append(out / name)
        tokens = index.tokens("train") - index.documents("train")  # less the <|endoftext|>s
        counts[name] = {"train_tokens": tokens, "train_chars": sum(map(len, texts)),
                        "val_docs": len(val.get(name, []))}
    return list(train), folders, counts


def train_model(
    cfg: MixtureSearchConfig, vocab_size: int, batches: DomainBatches, loss_fn: LossFn
) -> GPT:
    """One small model through the one loop (no checkpoints: the weights are the product)."""
    seed_everything(cfg.seed)
    model = GPT(preset(cfg.preset, vocab_size, cfg.seq_len))
    train = TrainConfig(max_steps=cfg.steps, lr=cfg.lr, warmup_steps=min(10, cfg.steps // 10),
                        device=cfg.device, seed=cfg.seed, log_every=max(1, cfg.steps // 20))
    Trainer(model, batches, loss_fn, train).fit()
    return model.eval()


@torch.no_grad()
def heldout_loss(model: GPT, folder: Path, cfg: MixtureSearchConfig, device: str) -> float | None:
    """Mean loss (nats/token) on the first `eval_tokens` of a source's val split (None: no val)."""
    index = ShardIndex.load(folder)
    if "val" not in index.splits or (index.tokens("val") - 1) // cfg.seq_len < 1:
        return None
    windows = (index.tokens("val") - 1) // cfg.seq_len
    total, n = 0.0, 0
    for x, y in eval_batches(folder, "val", min(8, windows), cfg.seq_len, cfg.eval_tokens,
                             device=device):
        total += float(model(x, y, reduction="sum"))
        n += y.numel()
    return total / max(n, 1)


def char_weights(names: list[str], token_weights: list[float], counts: dict[str, dict]) -> dict[str, float]:
    """Token shares -> the character shares `prepare` takes (x chars per token, renormalised).

    >>> char_weights(["a", "b"], [0.5, 0.5], {"a": {"train_chars": 30, "train_tokens": 10},
    ...                                      "b": {"train_chars": 10, "train_tokens": 10}})
    {'a': 0.75, 'b': 0.25}
    """
    raw = [w * counts[n]["train_chars"] / max(1, counts[n]["train_tokens"])
           for n, w in zip(names, token_weights)]
    return {n: round(r / sum(raw), 6) for n, r in zip(names, raw)}


def plot_history(history: list[dict], names: list[str], path: Path) -> None:
    """Weights (top) and excess losses (bottom) per source against the DRO step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gptlab.train.plots import save_png

    steps = [h["step"] for h in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for i, name in enumerate(names):
        top.plot(steps, [h["weights"][i] for h in history], label=name)
        bottom.plot(steps, [h["excess"][i] for h in history], label=name, lw=0.8)
    top.set(ylabel="domain weight", ylim=(0, 1), title="DoReMi: group-DRO domain weights")
    bottom.set(xlabel="proxy step", ylabel="excess loss (nats/token)")
    top.legend()
    fig.tight_layout()
    save_png(fig, path)


def search(cfg: MixtureSearchConfig) -> dict:
    """Tokenize per source, train reference and proxy, write the three files; returns doremi.json."""
    data = cfg.data if cfg.data is not None else run_dir(cfg.run, "data")
    out = cfg.out if cfg.out is not None else run_dir(cfg.run, "mixture")
    tok = load_tokenizer(cfg.tokenizer if cfg.tokenizer is not None else run_dir(cfg.run, "tokenizer"))
    device = pick_device(cfg.device)
    names, folders, counts = tokenize_sources(data, tok, out / "shards")
    k = len(names)
    ref_w = [1.0] * k if cfg.reference == "uniform" else [counts[n]["train_tokens"] for n in names]
    ref_rows = rows_per_domain(ref_w, cfg.batch_size)
    print(f"reference ({cfg.reference}): rows per step {dict(zip(names, ref_rows))}")
    reference = train_model(cfg, tok.vocab_size,
                            DomainBatches(folders, ref_rows, cfg.seq_len, cfg.seed, device),
                            mixture_loss)
    dro = DoReMiLoss(reference, names, cfg.eta, cfg.smoothing)
    proxy_rows = rows_per_domain([1.0] * k, cfg.batch_size)
    print(f"proxy (group DRO, eta {cfg.eta}, c {cfg.smoothing}): rows per step {dict(zip(names, proxy_rows))}")
    proxy = train_model(cfg, tok.vocab_size,
                        DomainBatches(folders, proxy_rows, cfg.seq_len, cfg.seed + 1000, device), dro)
    learned = dro.average
    report = {
        "method": "DoReMi (Xie et al. 2023): group DRO of a proxy against a reference",
        "sources": names,
        "token_weights": dict(zip(names, [round(w, 6) for w in learned])),
        "final_token_weights": dict(zip(names, [round(w, 6) for w in dro.alpha.tolist()])),
        "char_weights": char_weights(names, learned, counts),
        "reference_rows": dict(zip(names, ref_rows)),
        "counts": counts,
        "heldout_loss": {
            role: {n: heldout_loss(m, f, cfg, device) for n, f in zip(names, folders)}
            for role, m in (("reference", reference), ("proxy", proxy))
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "history": dro.history,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "weights.json", report["char_weights"])
    atomic_write_json(out / "doremi.json", report)
    plot_history(dro.history, names, out / "weights.png")
    return report


def run(cfg: MixtureSearchConfig) -> int:
    for name in ("steps", "batch_size", "seq_len", "eval_tokens"):
        if getattr(cfg, name) < 1:
            raise InputError(None, f"--{name.replace('_', '-')} must be at least 1")
    report = search(cfg)
    out = cfg.out if cfg.out is not None else run_dir(cfg.run, "mixture")
    for name in report["sources"]:
        ref, prx = (report["heldout_loss"][r][name] for r in ("reference", "proxy"))
        losses = f" | held-out loss ref {ref:.3f} proxy {prx:.3f}" if ref is not None else ""
        print(f"{name:<16} token weight {report['token_weights'][name]:.3f} | "
              f"char weight {report['char_weights'][name]:.3f}{losses}")
    print(f"wrote {out}/weights.json (for `gptlab data prepare --weights`), doremi.json, weights.png")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(MixtureSearchConfig, argv, "gptlab data mixture-search"))


if __name__ == "__main__":
    raise SystemExit(main())

"""Experiment harness for the quality-per-time benchmark: val nats/char on tinyshakespeare in N CPU seconds.

A self-contained twin of the real path (its own tokenizer cache, a plain loop over `gptlab.model.gpt.GPT`)
so recipes can be compared quickly while the project's trainer is being written. The final, reproducible
benchmark is `bench_quality.py`, which goes through `gptlab pretrain`.

What is timed (--clock cpu, the default, for a machine shared with other jobs): the process's CPU time with
one thread, which contention barely changes, unlike wall-clock; ~1.9 single-thread CPU-seconds equal one
quiet 2-thread wall-second here (measured; see docs/recipes.md). --clock wall times wall-clock instead.
What is timed: the training loop only (forward, backward, optimizer, plus torch.compile's first-step compile,
which happens inside the loop). Tokenizer training, data loading and evaluation run outside the clock and
are reported separately.

Evaluation: the whole val text (last 10% by characters) is tokenized as one string; tokens are scored
(a) in non-overlapping windows of the context length, and (b) in sliding windows with stride seq_len/2, where
every token is scored once with at least seq_len/2 tokens of context. Both are summed in nats and divided
by the number of val characters. The very first val token has no context and is not scored (one token out
of ~40k).

    python benchmarks/quality_search.py --budget 60 --vocab 1024 --n-layer 4 --n-embd 256 --tag try1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
CACHE = Path(os.environ.get("QUALITY_CACHE", "/tmp/quality_cache"))
RESULTS = Path(__file__).resolve().parent / "results" / "quality_search.jsonl"
# GPT-4's split pattern (as nanochat uses): words with a leading space, 1-2 digit numbers, punctuation runs.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


@dataclass
class Recipe:
    vocab: int = 1024  # 0 = character level
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_kv_head: int | None = None
    mlp_mult: float = 8 / 3
    seq_len: int = 256
    batch_size: int = 32
    # adamw | muon (own groups: Muon 'original' lr scaling at matrix_lr, AdamW at lr elsewhere) |
    # gadamw | gmuon (gptlab.train.optim.build_optimizer: one lr, Muon matched to AdamW's RMS,
    # weight decay on matrices only): the g* forms are what `gptlab pretrain` can express.
    optimizer: str = "adamw"
    lr: float = 3e-3  # AdamW lr (all params for adamw; embeddings/head/norms for muon)
    matrix_lr: float = 0.02  # Muon lr (Keller's sqrt(max(1, A/B)) scale)
    matrix_lr_keller: bool = True  # gmuon: pass matrix_lr / muon_wd as --muon-lr / --muon-weight-decay
    embed_lr: float | None = None  # AdamW lr for the embedding table (default: lr)
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    muon_wd: float = 0.0
    schedule: str = "wsd"  # wsd | cosine | const
    warmup: float = 0.02  # fraction of the run
    decay_frac: float = 0.4  # wsd: last fraction decays linearly
    final_lr_frac: float = 0.0
    budget: float = 60.0  # seconds of training; ignored when steps > 0
    steps: int = 0  # fixed step count instead of a time budget
    dtype: str = "bf16"  # bf16 autocast (AMX) | fp32
    compile: bool = False
    tie: bool = False
    zero_init: bool = False  # zero o_proj / down_proj (and lm_head)
    init_std: float = 0.02
    grad_clip: float | None = 1.0
    seed: int = 1337
    threads: int = 1
    clock: str = "cpu"  # cpu: budget in process CPU-seconds (robust on a shared machine); wall: wall-clock
    sampling: str = "random"  # random: windows at random offsets | epoch: fixed non-overlapping windows, shuffled per epoch (gptlab's PackedLoader)
    dropout: float = 0.0  # residual dropout on each attention / MLP output (ModelConfig.dropout)
    eval_every: float = 0.0  # fraction of the run between mid-run val checks (0 = none)
    tag: str = ""


# ----------------------------------------------------------------------------- data


def load_split() -> tuple[str, str]:
    text = DATA.read_text(encoding="utf-8")
    n = int(len(text) * 0.9)
    return text[:n], text[n:]


def char_tokenize(train: str, val: str) -> tuple[np.ndarray, np.ndarray, int]:
    chars = sorted(set(train))
    stoi = {c: i for i, c in enumerate(chars)}
    return (np.array([stoi[c] for c in train], dtype=np.int64),
            np.array([stoi[c] for c in val], dtype=np.int64), len(chars))


def bpe_tokenize(train: str, val: str, vocab: int) -> tuple[np.ndarray, np.ndarray, int, float]:
    """rustbpe trained on train only -> tiktoken encoding. vocab = 256 bytes + merges (+11 specials, unused)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    f = CACHE / f"bpe{vocab}.npz"
    if f.exists():
        z = np.load(f)
        return z["train"], z["val"], int(z["V"]), float(z["secs"])
    import rustbpe
    import tiktoken

    t0 = time.perf_counter()
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter([train]), vocab - 11, pattern=SPLIT_PATTERN)
    ranks = {bytes(k): v for k, v in tok.get_mergeable_ranks()}
    enc = tiktoken.Encoding("q", pat_str=tok.get_pattern(), mergeable_ranks=ranks, special_tokens={})
    secs = time.perf_counter() - t0
    tr = np.array(enc.encode_ordinary(train), dtype=np.int64)
    va = np.array(enc.encode_ordinary(val), dtype=np.int64)
    assert enc.decode(va.tolist()) == val
    np.savez(f, train=tr, val=va, V=vocab, secs=secs)
    return tr, va, vocab, secs


# ----------------------------------------------------------------------------- model / optim


def build_model(r: Recipe, V: int):
    from gptlab.model.config import ModelConfig
    from gptlab.model.gpt import GPT

    hidden = int(round(r.mlp_mult * r.n_embd / 32)) * 32
    cfg = ModelConfig(vocab_size=V, n_layer=r.n_layer, n_embd=r.n_embd, n_head=r.n_head,
                      n_kv_head=r.n_kv_head or r.n_head, intermediate_size=hidden,
                      max_seq_len=r.seq_len, tie_embeddings=r.tie, dropout=r.dropout)
    model = GPT(cfg)
    if r.init_std != 0.02:
        for n, p in model.named_parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=r.init_std / (math.sqrt(2 * r.n_layer) if n.endswith(("o_proj.weight", "down_proj.weight")) else 1))
    if r.zero_init:
        for n, p in model.named_parameters():
            if n.endswith(("o_proj.weight", "down_proj.weight")) or (n == "lm_head.weight" and not r.tie):
                torch.nn.init.zeros_(p)
    return model


def build_optimizers(model, r: Recipe) -> list:
    if r.optimizer in ("gadamw", "gmuon"):
        from gptlab.train.optim import build_optimizer

        muon = r.optimizer == "gmuon" and r.matrix_lr_keller
        o = build_optimizer(model, r.optimizer[1:], lr=r.lr, weight_decay=r.weight_decay,
                            betas=(r.beta1, r.beta2), embed_lr=r.embed_lr,
                            muon_lr=r.matrix_lr if muon else None,
                            muon_weight_decay=r.muon_wd if muon else None, device_type="cpu")
        return [o]
    named = list(model.named_parameters())
    emb = [p for n, p in named if n == "embed_tokens.weight"]
    head = [p for n, p in named if n == "lm_head.weight" and not r.tie]
    mats = [p for n, p in named if p.dim() == 2 and n not in ("embed_tokens.weight", "lm_head.weight")]
    gains = [p for n, p in named if p.dim() < 2]
    elr = r.embed_lr or r.lr
    betas = (r.beta1, r.beta2)
    if r.optimizer == "adamw":
        groups = [dict(params=mats + head, weight_decay=r.weight_decay, lr=r.lr),
                  dict(params=emb, weight_decay=r.weight_decay, lr=elr),
                  dict(params=gains, weight_decay=0.0, lr=r.lr)]
        return [torch.optim.AdamW([g for g in groups if g["params"]], betas=betas, fused=False)]
    groups = [dict(params=head, weight_decay=r.weight_decay, lr=r.lr),
              dict(params=emb, weight_decay=r.weight_decay, lr=elr),
              dict(params=gains, weight_decay=0.0, lr=r.lr)]
    adam = torch.optim.AdamW([g for g in groups if g["params"]], betas=betas)
    muon = torch.optim.Muon(mats, lr=r.matrix_lr, weight_decay=r.muon_wd, momentum=0.95,
                            adjust_lr_fn="original")
    return [adam, muon]


def lr_mult(r: Recipe, progress: float) -> float:
    if progress < r.warmup:
        return (progress + 1e-3) / (r.warmup + 1e-3)
    if r.schedule == "const":
        return 1.0
    if r.schedule == "cosine":
        p = (progress - r.warmup) / max(1e-9, 1 - r.warmup)
        return r.final_lr_frac + (1 - r.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    # wsd: constant, then linear to final_lr_frac over the last decay_frac
    start = 1 - r.decay_frac
    if progress < start:
        return 1.0
    p = min(1.0, (progress - start) / max(1e-9, r.decay_frac))
    return 1 - p * (1 - r.final_lr_frac)


# ----------------------------------------------------------------------------- eval


@torch.no_grad()
def evaluate(model, val: np.ndarray, T: int, n_chars: int, stride: int | None, dtype: str) -> float:
    """Total nats over val tokens / n_chars. stride None = non-overlapping windows."""
    model.eval()
    ids = torch.from_numpy(val)
    N = len(ids)
    stride = stride or T
    total, scored = 0.0, 1  # token 0 is never a target
    starts = list(range(0, N - 1, stride))
    ac = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else torch.autocast("cpu", enabled=False)
    batch: list[tuple[int, int]] = []

    def flush(batch):
        nonlocal total, scored
        L = max(min(s + T, N - 1) - s for s, _ in batch)
        x = torch.zeros(len(batch), L, dtype=torch.long)
        y = torch.full((len(batch), L), -1, dtype=torch.long)
        for i, (s, first) in enumerate(batch):
            e = min(s + T, N - 1)
            x[i, : e - s] = ids[s:e]
            tgt = ids[s + 1 : e + 1].clone()
            tgt[: first - s] = -1  # already scored by an earlier window
            y[i, : e - s] = tgt
        with ac:
            loss = model(x, y, reduction="none").float()
        total += loss[y >= 0].sum().item()
        scored += int((y >= 0).sum())

    prev_end = 0
    for s in starts:
        e = min(s + T, N - 1)
        first = max(s, prev_end)  # first position whose target is not yet scored
        if first >= e:
            continue
        batch.append((s, first))
        prev_end = e
        if len(batch) == 32:
            flush(batch)
            batch = []
        if e == N - 1:
            break
    if batch:
        flush(batch)
    assert scored == N, (scored, N)
    model.train()
    return total / n_chars


# ----------------------------------------------------------------------------- train


def run(r: Recipe) -> dict:
    torch.set_num_threads(r.threads)
    if r.compile and r.clock == "cpu":
        # compile in this process so its cost shows up in process_time (worker processes would hide it)
        import torch._inductor.config as ic

        ic.compile_threads = 1
    torch.manual_seed(r.seed)
    train_text, val_text = load_split()
    t0 = time.perf_counter()
    if r.vocab == 0:
        tr, va, V = char_tokenize(train_text, val_text)
        tok_secs = time.perf_counter() - t0
    else:
        tr, va, V, tok_secs = bpe_tokenize(train_text, val_text, r.vocab)
    cpt = len(val_text) / len(va)
    model = build_model(r, V)
    opts = build_optimizers(model, r)
    for o in opts:
        for g in o.param_groups:
            g["base_lr"] = g["lr"]
    step_fn = torch.compile(model) if r.compile else model
    data = torch.from_numpy(tr)
    gen = torch.Generator().manual_seed(r.seed)
    T, B = r.seq_len, r.batch_size
    ac = torch.autocast("cpu", dtype=torch.bfloat16) if r.dtype == "bf16" else torch.autocast("cpu", enabled=False)
    load0 = os.getloadavg()
    clock = time.process_time if r.clock == "cpu" else time.perf_counter
    wall0, wall_train = time.perf_counter(), 0.0
    train_secs, step, history = 0.0, 0, []
    next_eval = r.eval_every
    losses = []
    perm, pos, n_win = None, 0, (len(data) - 1) // T
    while True:
        progress = step / r.steps if r.steps else train_secs / r.budget
        if progress >= 1.0:
            break
        if r.eval_every and progress >= next_eval:
            next_eval += r.eval_every
            v = evaluate(model, va, T, len(val_text), None, r.dtype)
            history.append(dict(step=step, secs=round(train_secs, 1), val=round(v, 4),
                                train=round(float(np.mean(losses[-20:])) / cpt, 4) if losses else None))
            print(f"  [{r.tag}] step {step} t={train_secs:.0f}s val {v:.4f} nats/char", flush=True)
        ts, tw = clock(), time.perf_counter()
        m = lr_mult(r, progress)
        for o in opts:
            for g in o.param_groups:
                g["lr"] = g["base_lr"] * m
        if r.sampling == "epoch":
            if perm is None or pos + B > n_win:  # new epoch: drop the ragged tail, reshuffle
                perm, pos = torch.randperm(n_win, generator=gen), 0
            ix = perm[pos : pos + B] * T
            pos += B
        else:
            ix = torch.randint(len(data) - T - 1, (B,), generator=gen)
        x = torch.stack([data[i : i + T] for i in ix])
        y = torch.stack([data[i + 1 : i + T + 1] for i in ix])
        with ac:
            loss = step_fn(x, y)
        loss.backward()
        if r.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        for o in opts:
            o.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        train_secs += clock() - ts
        wall_train += time.perf_counter() - tw
        if step == 1:
            first_step_secs = train_secs
    load1 = os.getloadavg()
    te = time.perf_counter()
    val_nonoverlap = evaluate(model, va, T, len(val_text), None, r.dtype)
    val_sliding = evaluate(model, va, T, len(val_text), T // 2, r.dtype)
    eval_secs = time.perf_counter() - te
    res = dict(recipe=asdict(r), V=V, params=model.num_params(),
               params_nonemb=model.num_params(exclude_embeddings=True), chars_per_token=round(cpt, 3),
               train_tokens=len(tr), steps=step, train_secs=round(train_secs, 1), train_wall_secs=round(wall_train, 1),
               first_step_secs=round(first_step_secs, 2), tokens_seen=step * B * T,
               epochs=round(step * B * T / len(tr), 2), steps_per_sec=round(step / train_secs, 2),
               final_train_loss_per_char=round(float(np.mean(losses[-50:])) / cpt, 4),
               val_nonoverlap=round(val_nonoverlap, 4), val_sliding=round(val_sliding, 4),
               tokenizer_secs=round(tok_secs, 2), eval_secs=round(eval_secs, 1),
               load_start=[round(x, 2) for x in load0], load_end=[round(x, 2) for x in load1],
               history=history, time=time.strftime("%Y-%m-%d %H:%M:%S"))
    return res


def parse(argv: list[str] | None = None) -> Recipe:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in asdict(Recipe()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif default is None:
            p.add_argument(flag, type=float if name in ("embed_lr", "grad_clip") else int, default=None)
        else:
            p.add_argument(flag, type=type(default), default=default)
    return Recipe(**vars(p.parse_args(argv)))


def summary(path: Path = RESULTS) -> str:
    """A markdown table of every run in the results file, in the order they ran."""
    rows = ["| tag | V | L x d | T x B | opt | lr | wd | drop | budget | steps | tokens | epochs | val | sliding | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for line in path.read_text().splitlines():
        x = json.loads(line)
        r = x["recipe"]
        # muon (own groups) and gmuon with Keller's scale: "matrix lr/AdamW lr"; gmuon without: one lr
        split = r["optimizer"] == "muon" or (r["optimizer"] == "gmuon" and r.get("matrix_lr_keller"))
        lr = f"{r['matrix_lr']}/{r['lr']}" if split else r["lr"]
        wd = f"{r.get('muon_wd', 0)}/{r['weight_decay']}" if split else r["weight_decay"]
        budget = f"{r['steps']} steps" if r["steps"] else f"{r['budget']:.0f} {r.get('clock', 'wall')}-s"
        rows.append(
            f"| {r['tag']} | {x['V']} | {r['n_layer']} x {r['n_embd']} | {r['seq_len']} x {r['batch_size']} "
            f"| {r['optimizer']} | {lr} | {wd} | {r.get('dropout', 0)} | {budget} | {x['steps']} "
            f"| {x['tokens_seen'] / 1e6:.2f}M | {x['epochs']} | {x['val_nonoverlap']:.4f} | {x['val_sliding']:.4f} "
            f"| {x['load_start'][0]:.1f}-{x['load_end'][0]:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(os.sys.argv) > 1 and os.sys.argv[1] == "--summary":
        print(summary())
        return 0
    r = parse(argv)
    res = run(r)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(res) + "\n")
    print(f"[{r.tag}] V={res['V']} L{r.n_layer} d{r.n_embd} T{r.seq_len} B{r.batch_size} {r.optimizer} "
          f"steps={res['steps']} ({res['steps_per_sec']}/s) epochs={res['epochs']} train={res['train_secs']}s "
          f"| train {res['final_train_loss_per_char']} val {res['val_nonoverlap']} / sliding {res['val_sliding']} "
          f"nats/char | load {res['load_start'][0]}->{res['load_end'][0]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`gptlab eval diversity`: mode collapse, measured, for base vs SFT vs RL models on the same prompts.

RLHF sharpens the policy toward what the reward model likes; the price is diversity (Kirk et al.,
"Understanding the effects of RLHF on LLM generalisation and diversity"). Each model samples K
replies per prompt at the same temperature and seeds, and we report:

- `entropy`: the mean per-token entropy (nats) of the model's next-token distribution along its
  own samples: how spread out the policy is where it actually goes;
- `distinct_n` (n = 1, 2, 3): distinct n-grams / all n-grams over every reply (Li et al. 2016);
- `distinct_2_within`: the same, among the K replies to one prompt, averaged over prompts: a
  collapsed model says the same thing to the same question;
- `identical_frac`: prompts whose K replies are all the same; `length`: mean reply tokens.

    gptlab eval diversity --run tiny                      # base, sft, rl of runs/tiny (those that exist)
    gptlab eval diversity --models sft=runs/tiny/sft rl=runs/tiny/rl --samples 8

n-grams are over token ids, so compare models that share a tokenizer (one run's stages do).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from gptlab.errors import InputError


def distinct_n(seqs: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of `seqs` (0 when there are none).

    >>> distinct_n([[1, 2, 3], [1, 2, 4]], 1), distinct_n([[1, 2, 3], [1, 2, 4]], 2)
    (0.6666666666666666, 0.75)
    """
    grams = [tuple(s[i : i + n]) for s in seqs for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def sample_stats(model: Any, tok: Any, prompts: list[list[int]], samples: int, max_new_tokens: int,
                 temperature: float, seed: int, max_batch: int = 64) -> dict[str, float]:
    """Sample `samples` replies per prompt with `model`; the diversity figures of the module doc."""
    import torch

    from gptlab.infer.loading import make_engine
    from gptlab.stages.rollout import Rollouts, masked_mean, token_logprobs
    from gptlab.tokenizer.special import PAD

    engine = make_engine(model, tok, max_batch=min(max_batch, len(prompts) * samples))
    rows = [p for p in prompts for _ in range(samples)]
    replies = engine.generate_all(rows, max_new_tokens, temperature=temperature, seed=seed)
    # The stop token ends a reply but says nothing about its content: leave it out of n-grams.
    texts = [r[:-1] if r and r[-1] in engine.eos_ids else r for r in replies]
    entropies = []
    with torch.no_grad():
        for lo in range(0, len(rows), 32):
            ro = Rollouts(rows[lo : lo + 32], replies[lo : lo + 32], [], 0.0)
            packed = ro.pack(tok, tok.token_id(PAD), next(model.parameters()).device)
            _, ent = token_logprobs(model, packed["idx"], packed["targets"])
            entropies.append((float(masked_mean(ent, packed["mask"])), float(packed["mask"].sum())))
    total = sum(w for _, w in entropies)
    groups = [texts[i : i + samples] for i in range(0, len(texts), samples)]
    return {
        "entropy": sum(e * w for e, w in entropies) / max(total, 1.0),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_3": distinct_n(texts, 3),
        "distinct_2_within": statistics.fmean(distinct_n(g, 2) for g in groups),
        "identical_frac": statistics.fmean(float(all(t == g[0] for t in g)) for g in groups),
        "length": statistics.fmean(map(len, texts)),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gptlab eval diversity", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", default="tiny", help="run name: default models runs/<run>/{base,sft,rl}")
    p.add_argument("--models", nargs="+", metavar="NAME=PATH",
                   help="models to compare (default: base, sft, rl of the run, those that exist)")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: runs/<run>/tokenizer)")
    p.add_argument("--tasks", default="arithmetic,identity,play_speaker",
                   help="comma-separated tasks whose test-split prompts are used")
    p.add_argument("--prompts", type=Path, help="prompts file (.txt one per line, or JSONL 'prompt') instead of --tasks")
    p.add_argument("--n-prompts", type=int, default=32, help="prompts per task")
    p.add_argument("--samples", type=int, default=4, help="replies sampled per prompt (K)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="reply budget in tokens")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (the same for every model)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (the same for every model)")
    p.add_argument("--out", type=Path, help="report (default: runs/<run>/eval/diversity.json)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    return p


def _models(args: argparse.Namespace) -> list[tuple[str, Path]]:
    from gptlab.common import run_dir

    if args.models:
        out = []
        for spec in args.models:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise InputError(None, f"--models: expected NAME=PATH, got {spec!r}")
            out.append((name, Path(path)))
        return out
    found = [(s, run_dir(args.run, s)) for s in ("base", "sft", "rl") if (run_dir(args.run, s) / "config.json").exists()]
    if not found:
        raise InputError(run_dir(args.run), "no base/sft/rl model here; give --models NAME=PATH ...")
    return found


def diversity_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.samples < 2 or args.n_prompts < 1:
        raise InputError(None, "--samples must be at least 2 and --n-prompts at least 1")
    from gptlab.common import run_dir
    from gptlab.fileio import atomic_write_json
    from gptlab.infer.loading import load_for_inference
    from gptlab.stages import rollout
    from gptlab.tokenizer.bpe import Tokenizer

    models = _models(args)
    tok = Tokenizer.load(args.tokenizer or run_dir(args.run, "tokenizer"))
    results: dict[str, Any] = {}
    prompts: list[list[int]] | None = None
    for name, path in models:
        model, _ = load_for_inference(path, device=args.device, tokenizer=tok)
        if prompts is None:
            room = model.config.max_seq_len - args.max_new_tokens - 1
            if args.prompts is not None:
                from gptlab.align.rank_cli import read_prompts

                pool, _ = rollout.file_prompts(tok, read_prompts(args.prompts)[: args.n_prompts], room)
            else:
                names = [t for t in args.tasks.split(",") if t]
                try:
                    pool, _ = rollout.task_prompts(tok, names, "test", args.n_prompts, room, seed=0)
                except ValueError as e:
                    raise InputError(None, f"--tasks: {e}") from None
            prompts = [p.ids for p in pool]
            if not prompts:
                raise InputError(args.prompts, "no prompt fits the model's context")
        results[name] = sample_stats(model, tok, prompts, args.samples, args.max_new_tokens, args.temperature,
                                     args.seed)
        results[name]["path"] = str(path)
    report = {"prompts": len(prompts or []), "samples": args.samples, "temperature": args.temperature,
              "max_new_tokens": args.max_new_tokens, "models": results}
    out = args.out or run_dir(args.run, "eval") / "diversity.json"
    atomic_write_json(out, report)
    cols = ("entropy", "distinct_1", "distinct_2", "distinct_3", "distinct_2_within", "identical_frac", "length")
    print(f"{'model':<8} " + " ".join(f"{c:>17}" for c in cols))
    for name, r in results.items():
        print(f"{name:<8} " + " ".join(f"{r[c]:>17.3f}" for c in cols))
    print(f"-> {out}")
    return 0


main = diversity_main  # so the module is also a plain `main(argv)` CLI entry

if __name__ == "__main__":
    raise SystemExit(diversity_main())

"""`gptlab rank`: make rankings of K answers per prompt for the reward model.

    gptlab rank generate --from runs/tiny/sft --prompts prompts.txt --k 4   # -> rankings/candidates.jsonl
    gptlab rank label                                  # a person orders them -> rankings/human.jsonl
    gptlab rank rule --tasks arithmetic,play_speaker --k 4 --n 200          # -> rankings/rule.jsonl
    gptlab rank ratings --n 300 --k 4                  # chitchat ratings  -> rankings/ratings.jsonl
    gptlab rank demos --tasks chitchat --n 400 --k 2   # people's replies over samples -> rankings/demos.jsonl
    gptlab rank judge --judge runs/tiny/sft            # a judge model orders candidates -> rankings/judge.jsonl

All outputs are `ranked` JSONL (gptlab.data.preferences), read by `gptlab reward train --data`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptlab.errors import InputError


def _defaults(p: argparse.ArgumentParser, out_name: str | None) -> None:
    p.add_argument("--run", default="tiny", help="run name: default paths are under runs/<run>/")
    if out_name:
        p.add_argument("--out", type=Path, help=f"output file (default: runs/<run>/rankings/{out_name})")


def _sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="model", type=Path, help="model folder to sample from (default: runs/<run>/sft)")
    p.add_argument("--k", type=int, default=4, help="answers sampled per prompt")
    p.add_argument("--max-new-tokens", type=int, default=48, help="longest answer, in tokens")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (diversity among the K)")
    p.add_argument("--top-k", type=int, help="sample among the k likeliest tokens only")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (answer j uses seed + j)")
    p.add_argument("--batch", type=int, default=32, help="answers generated at once")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")


SUBCOMMANDS = {
    "generate": "sample K answers per prompt into a candidates file",
    "label": "order the candidates by hand in the terminal (resumable)",
    "rule": "rank K sampled answers per task prompt by the task's reward",
    "ratings": "rank chitchat chats on one opening topic by their 1-10 ratings",
    "demos": "rank a person's written reply above the model's samples, each cut within the shorter",
    "judge": "rank candidates by a judge model's yes/no verdict",
}

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gptlab rank", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="cmd", required=True, help="what to do")

    g = sub.add_parser("generate", help="sample K answers per prompt into a candidates file", description="sample K answers per prompt into a candidates file")
    _defaults(g, "candidates.jsonl")
    _sampling(g)
    g.add_argument("--prompts", type=Path, required=True,
                   help="prompts: a .txt file (one user message per line) or JSONL with 'prompt' (string or messages)")

    lab = sub.add_parser("label", help="order the candidates by hand in the terminal (resumable)", description="order the candidates by hand in the terminal (resumable)")
    _defaults(lab, "human.jsonl")
    lab.add_argument("--candidates", type=Path, help="candidates file (default: runs/<run>/rankings/candidates.jsonl)")
    lab.add_argument("--rater", default="human", help="name recorded in each ranking's meta")

    r = sub.add_parser("rule", help="rank K sampled answers per task prompt by the task's reward", description="rank K sampled answers per task prompt by the task's reward")
    _defaults(r, "rule.jsonl")
    _sampling(r)
    r.add_argument("--tasks", default="arithmetic,play_speaker", help="comma-separated task names (gptlab.eval.tasks)")
    r.add_argument("--n", type=int, default=200, help="prompts per task (from the train split)")
    r.add_argument("--reference", action="store_true",
                   help="rank the task's reference reply among the K samples (a signal even when all K are wrong)")

    ra = sub.add_parser("ratings", help="rank chitchat chats on one opening topic by their 1-10 ratings", description="rank chitchat chats on one opening topic by their 1-10 ratings")
    _defaults(ra, "ratings.jsonl")
    ra.add_argument("--k", type=int, default=4, help="chats per ranking")
    ra.add_argument("--n", type=int, default=300, help="rankings to make")
    ra.add_argument("--max-chars", type=int, default=600, help="each chat's transcript is cut to this length")
    ra.add_argument("--keep-default", action="store_true", help="keep 5/5/5 ratings (the form's untouched default)")
    ra.add_argument("--min-gap", type=int, default=1,
                    help="least difference between the rating sums (3-30) of two chats in a ranking")
    ra.add_argument("--seed", type=int, default=0, help="which chats are grouped together")

    d = sub.add_parser("demos", help=SUBCOMMANDS["demos"], description=SUBCOMMANDS["demos"] + ". Each pair is "
                       "cut at a word boundary to its own random 50-100% of the shorter reply, so neither length nor a cut-off "
                       "ending tells the two apart.")
    _defaults(d, "demos.jsonl")
    _sampling(d)
    d.add_argument("--tasks", default="chitchat",
                   help="comma-separated tasks with written replies (chitchat, continue_speech, ...), train split")
    d.add_argument("--n", type=int, default=400, help="prompts per task")

    j = sub.add_parser("judge", help="rank candidates by a judge model's yes/no verdict", description="rank candidates by a judge model's yes/no verdict")
    _defaults(j, "judge.jsonl")
    j.add_argument("--judge", type=Path, help="judge model folder (default: runs/<run>/sft)")
    j.add_argument("--candidates", type=Path, help="candidates file (default: runs/<run>/rankings/candidates.jsonl)")
    j.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda")
    return p


def read_prompts(path: Path) -> list[list[dict]]:
    """A .txt file (one user message per line) or JSONL records with 'prompt' or 'messages'."""
    from gptlab.data.conversations import BadRecord
    from gptlab.data.preferences import _prompt

    if not path.is_file():
        raise InputError(path, "prompts file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            if path.suffix != ".jsonl":
                out.append([{"role": "user", "content": line.rstrip("\n")}])
                continue
            try:
                rec = json.loads(line)
                value = rec.get("prompt", rec.get("messages")) if isinstance(rec, dict) else None
                if value is None:
                    raise BadRecord("missing_field", "record needs a 'prompt' (or 'messages') field")
                out.append(_prompt(value))
            except json.JSONDecodeError:
                raise InputError(path, "line is not valid JSON", line=no) from None
            except BadRecord as e:
                raise InputError(path, str(e), line=no) from None
    if not out:
        raise InputError(path, "no prompts in file")
    return out


def _engine(args: argparse.Namespace):
    from gptlab.common import run_dir
    from gptlab.infer.loading import load_for_inference, make_engine

    if args.k < 2:
        raise InputError(None, "--k must be at least 2 (a ranking compares answers)")
    model, tok = load_for_inference(args.model or run_dir(args.run, "sft"), device=args.device)
    return make_engine(model, tok, max_batch=args.batch), tok


def _out(args: argparse.Namespace, name: str) -> Path:
    from gptlab.common import run_dir

    return args.out or run_dir(args.run, "rankings") / name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gptlab.align import rankers
    from gptlab.common import run_dir
    from gptlab.data.preferences import save_rankings

    if args.cmd == "generate":
        prompts = read_prompts(args.prompts)
        engine, tok = _engine(args)
        got = rankers.sample_responses(engine, tok, prompts, args.k, args.max_new_tokens,
                                       args.temperature, args.top_k, args.seed)
        cands = [c for c in got if c is not None]
        out = _out(args, "candidates.jsonl")
        rankers.save_candidates(out, cands)
        print(f"{len(cands)} prompts x {args.k} answers -> {out} ({len(got) - len(cands)} too long, skipped)")
    elif args.cmd == "label":
        from gptlab.align.labeler import Labeler

        cands = rankers.load_candidates(args.candidates or run_dir(args.run, "rankings") / "candidates.jsonl")
        Labeler(cands, _out(args, "human.jsonl"), rater=args.rater).run()
    elif args.cmd in ("rule", "demos"):
        from gptlab.eval.tasks import get_task, task_names

        names = task_names(args.tasks, scorable=args.cmd == "rule")
        engine, tok = _engine(args)
        sampling = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
                    "seed": args.seed}
        rankings = []
        for t in names:
            task = get_task(t, "train")
            if args.cmd == "rule":
                got, stats = rankers.rule_rankings(engine, tok, task, args.n, args.k, reference=args.reference, **sampling)
                print(f"{t}: {stats['prompts']} prompts, {stats['prompts_with_signal']} with a winner, "
                      f"{stats['pairs']} pairs, mean reward {stats['mean_reward']:.3f}")
            else:
                got, stats = rankers.demo_rankings(engine, tok, task, args.n, args.k, **sampling)
                print(f"{t}: {stats['prompts']} prompts, {stats['pairs']} pairs ({stats['skipped']} samples skipped: "
                      "a tool call, or under 3 words once cut)")
            rankings += got
        out = _out(args, f"{args.cmd}.jsonl")
        save_rankings(out, rankings)
        print(f"{len(rankings)} rankings -> {out}")
    elif args.cmd == "ratings":
        from gptlab.data.corpora import load_chats

        if args.k < 2:
            raise InputError(None, "--k must be at least 2")
        if args.min_gap < 1:
            raise InputError(None, "--min-gap must be at least 1")
        rankings = rankers.ratings_rankings(load_chats(), args.n, args.k, args.seed, args.max_chars,
                                            skip_default=not args.keep_default, min_gap=args.min_gap)
        out = _out(args, "ratings.jsonl")
        save_rankings(out, rankings)
        print(f"{len(rankings)} rankings of {args.k} rated chats -> {out}")
    elif args.cmd == "judge":
        from gptlab.infer.loading import load_for_inference

        cands = rankers.load_candidates(args.candidates or run_dir(args.run, "rankings") / "candidates.jsonl")
        model, tok = load_for_inference(args.judge or run_dir(args.run, "sft"), device=args.device)
        rankings = []
        for c in cands:
            scores = rankers.judge_scores(model, tok, c.prompt, c.responses)
            rankings += rankers.rankings_from_scores(c, scores, {"source": "judge", "judge": str(args.judge)})
        out = _out(args, "judge.jsonl")
        save_rankings(out, rankings)
        print(f"{len(rankings)} rankings -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

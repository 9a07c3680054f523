"""`gptlab rank agree A.jsonl B.jsonl`: how far two rankings files agree on the items both ranked
(see `gptlab.align.agreement`): a judge model against people, or one labeler against another.

    gptlab rank ratings --run x --n 300                       # people: chitchat 1-10 ratings
    gptlab rank judge --run x --from runs/smol/base --candidates runs/x/rankings/ratings.jsonl
    gptlab rank agree runs/x/rankings/ratings.jsonl runs/x/rankings/judge.jsonl
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from gptlab.align.agreement import agreement
from gptlab.commandline import parse
from gptlab.data.preferences import load_rankings
from gptlab.errors import InputError
from gptlab.fileio import atomic_write_text


@dataclass
class AgreeConfig:
    """Agreement of ranking file B with ranking file A on the items both ranked: pairwise agreement
    and Cohen's kappa on every shared (prompt, x, y) pair, Kendall's tau and top-1 agreement on every
    shared whole ranking, each with a bootstrap 95% interval (rankings resampled whole). Items match
    by prompt and response text, so B may be a judge's ranking of A's own responses
    (`gptlab rank judge --candidates A.jsonl`). Prints a table; writes a JSON summary with --out."""

    a: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="A")]  # reference rankings file (e.g. people's: rankings/ratings.jsonl)
    b: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="B")]  # rankings file to compare with A (e.g. a judge's: rankings/judge.jsonl)
    out: Path | None = None  # JSON summary to write (default: none, print only)
    bootstrap: int = 2000  # bootstrap draws per interval
    seed: int = 0  # bootstrap seed


def _interval(rec: dict, key: str) -> str:
    ci = rec.get(f"{key}_ci95")
    value = rec.get(key)
    if value is None:
        return "undefined (one file always chose one side)"
    return f"{value:.3f}" + (f"  (95% CI {ci[0]:.3f} to {ci[1]:.3f})" if ci else "")


def table(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    p, r = summary["pairs"], summary["rankings"]
    lines = [f"shared pairs: {p['n']} from {p['rankings']} rankings of A"]
    if p["n"]:
        lines += [f"  pairwise agreement  {_interval(p, 'agreement')}",
                  f"  Cohen's kappa       {_interval(p, 'kappa')}",
                  f"  A's first-listed response wins {p['a_first_wins']:.3f}, B's {p['b_first_wins']:.3f}"]
    lines.append(f"shared whole rankings: {r['n']}")
    if r["n"]:
        lines += [f"  Kendall's tau       {_interval(r, 'kendall_tau')}",
                  f"  top-1 agreement     {_interval(r, 'top1')}   chance {r['top1_chance']:.3f}"]
    return "\n".join(lines)


def run(cfg: AgreeConfig) -> int:
    if cfg.bootstrap < 100:
        raise InputError(None, f"--bootstrap must be at least 100, got {cfg.bootstrap}")
    a, b = load_rankings(cfg.a), load_rankings(cfg.b)
    summary = agreement(a, b, cfg.bootstrap, cfg.seed)
    if summary["pairs"]["n"] == 0:
        raise InputError(cfg.b, f"shares no ranked pair with {cfg.a} (items match by prompt and response text)")
    summary["files"] = {"a": str(cfg.a), "b": str(cfg.b), "a_rankings": len(a), "b_rankings": len(b)}
    print(table(summary))
    if cfg.out is not None:
        atomic_write_text(cfg.out, json.dumps(summary, indent=2) + "\n")
        print(f"wrote {cfg.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(AgreeConfig, argv, "gptlab rank agree"))

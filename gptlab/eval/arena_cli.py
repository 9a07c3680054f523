"""`gptlab arena`: an Elo leaderboard from pairwise votes, as Chatbot Arena ranks its models.

    gptlab arena votes.jsonl                                    # Bradley-Terry, 1000 bootstrap draws
    gptlab arena votes.jsonl --out ratings.json --plot ratings.png
    gptlab arena votes.jsonl --method online --k 16 --anchor sft

Each line of the votes file is `{"model_a": ..., "model_b": ..., "winner": "a" | "b" | "tie"}`
(LMSYS's "model_a" / "model_b" / "tie (bothbad)" are accepted too); blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro
from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

from gptlab.commandline import parse
from gptlab.errors import InputError
from gptlab.eval.elo import Vote, leaderboard, normalise_winner
from gptlab.fileio import atomic_open, atomic_write_json, json_loads


def read_votes(path: str | Path) -> list[Vote]:
    """Votes from JSONL; any bad line raises InputError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    votes = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json_loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"line is not valid JSON ({e.msg})", line=lineno) from None
            if not isinstance(rec, dict):
                raise InputError(
                    path,
                    "each line must be a JSON object with model_a, model_b, winner",
                    line=lineno,
                )
            for key in ("model_a", "model_b", "winner"):
                if not isinstance(rec.get(key), str) or not rec[key]:
                    raise InputError(path, f"missing or empty string field {key!r}", line=lineno)
            try:
                winner = normalise_winner(rec["winner"])
            except ValueError as e:
                raise InputError(path, str(e), line=lineno) from None
            if rec["model_a"] == rec["model_b"]:
                raise InputError(
                    path, f"a model cannot play itself ({rec['model_a']!r})", line=lineno
                )
            votes.append(Vote(rec["model_a"], rec["model_b"], winner))
    if not votes:
        raise InputError(path, "no votes in file")
    return votes


def format_table(rows: list[dict]) -> str:
    """The leaderboard as fixed-width text."""
    width = max(5, *(len(r["model"]) for r in rows))
    head = f"{'rank':>4}  {'model':<{width}}  {'rating':>7}  {'95% CI':>15}  {'games':>6}  {'win rate':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ci = f"{r['ci'][0]:.0f} to {r['ci'][1]:.0f}" if r["ci"] else "-"
        lines.append(
            f"{r['rank']:>4}  {r['model']:<{width}}  {r['rating']:>7.1f}  {ci:>15}  {r['games']:>6}  {r['win_rate']:>8.1%}"
        )
    return "\n".join(lines)


def plot_ratings(rows: list[dict], path: str | Path, title: str) -> None:
    """Horizontal error-bar chart, best model on top; written atomically."""
    path = Path(path)
    rows = rows[::-1]
    y = list(range(len(rows)))
    x = [r["rating"] for r in rows]
    fig = Figure(figsize=(7, 1.2 + 0.4 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    if rows[0]["ci"]:
        err = [[r["rating"] - r["ci"][0] for r in rows], [r["ci"][1] - r["rating"] for r in rows]]
        ax.errorbar(x, y, xerr=err, fmt="o", capsize=4)
    else:
        ax.plot(x, y, "o")
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.set_xlabel("Elo rating" + (" (95% CI)" if rows[0]["ci"] else ""))
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=120)


@dataclass
class ArenaConfig:
    """Rank models from pairwise votes (JSONL of model_a, model_b, winner) on the Elo scale."""

    votes: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="VOTES")]  # votes file: one JSON object per line with model_a, model_b, winner (a|b|tie)
    method: Literal["bt", "online"] = "bt"  # bt: Bradley-Terry maximum likelihood, independent of vote order (Chatbot Arena's); online: sequential Elo updates in file order
    bootstrap: int = 1000  # resample the votes N times for 95% confidence intervals; 0: no intervals
    anchor: str | None = None  # give this model rating 1000 (None: the mean rating is 1000)
    k: float = 4.0  # online Elo step size (4, as LMSYS)
    seed: int = 0  # bootstrap random seed
    out: Path | None = None  # also write the leaderboard as JSON here
    plot: Path | None = None  # also draw ratings with error bars here (png, svg, pdf)


def run(cfg: ArenaConfig) -> int:
    if cfg.bootstrap < 0:
        raise InputError(None, f"--bootstrap must be >= 0, got {cfg.bootstrap}")
    votes = read_votes(cfg.votes)
    try:
        rows = leaderboard(votes, cfg.bootstrap, cfg.method, cfg.anchor, cfg.seed, cfg.k)
    except ValueError as e:  # e.g. an anchor that is not in the votes
        raise InputError(cfg.votes, str(e)) from None
    print(format_table(rows))
    if cfg.out:
        atomic_write_json(
            cfg.out,
            {
                "votes": len(votes),
                "method": cfg.method,
                "bootstrap": cfg.bootstrap,
                "anchor": cfg.anchor,
                "k": cfg.k if cfg.method == "online" else None,
                "leaderboard": [{**r, "ci": list(r["ci"]) if r["ci"] else None} for r in rows],
            },
        )
    if cfg.plot:
        plot_ratings(
            rows,
            cfg.plot,
            f"{len(votes)} votes, {'Bradley-Terry' if cfg.method == 'bt' else 'online Elo'}",
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(ArenaConfig, argv, "gptlab arena"))

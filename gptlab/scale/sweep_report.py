"""What a sweep shows: trials.jsonl (one record per trial), table.md (best first, pruned trials
marked) and trials.png (val loss against step per trial, pruned ones grey; and loss against LR).

Everything is read from the study, so the report of a resumed or finished sweep is rebuilt from
study.db alone: a pruned trial's curve is the values it reported before it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gptlab.fileio import atomic_write_text
from gptlab.train.plots import save_png


@dataclass
class TrialRow:
    """One trial as the report shows it."""

    number: int
    state: str  # complete, pruned, diverged, interrupted, running, waiting
    lr: float | None
    n_embd: int | None
    n_layer: int | None
    params: int | None
    val_loss: float | None  # complete: the final loss; pruned: the last reported one
    step: int | None  # the step of val_loss (a complete trial's: --steps)
    val_bpb: float | None
    seconds: float | None
    curve: list[tuple[int, float]]  # (step, val loss) as reported to the pruner


def state_of(t: FrozenTrial) -> str:
    if t.state == TrialState.FAIL:
        return "diverged" if "diverged" in t.user_attrs else "interrupted"
    return t.state.name.lower()


def rows(study: optuna.Study, steps: int) -> list[TrialRow]:
    """The trials, best first: complete by loss, then pruned by how far they got, then the rest."""
    out = []
    for t in study.get_trials(deepcopy=False):
        curve = sorted(t.intermediate_values.items())
        state = state_of(t)
        if state == "complete":
            loss, step = t.value, steps
        elif curve:
            step, loss = curve[-1]
        else:
            loss = step = None
        out.append(TrialRow(
            t.number, state, t.params.get("lr"), t.params.get("n_embd"), t.params.get("n_layer"),
            t.user_attrs.get("params"), loss, step, t.user_attrs.get("val_bpb"),
            t.duration.total_seconds() if t.duration else None, curve,
        ))
    rank = {"complete": 0, "pruned": 1}

    def key(r: TrialRow) -> tuple:
        return (rank.get(r.state, 2), -(r.step or 0), r.val_loss if r.val_loss is not None else float("inf"))

    return sorted(out, key=key)


def write_jsonl(table: list[TrialRow], path: Path) -> None:
    atomic_write_text(path, "".join(json.dumps(asdict(r)) + "\n" for r in table))


def markdown(table: list[TrialRow]) -> str:
    """| rank | trial | state | lr | n_embd | n_layer | params | val loss | at step | val bpb | s |"""
    lines = [
        "| rank | trial | state | lr | n_embd | n_layer | params | val loss | at step | val bpb | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for i, r in enumerate(table, 1):
        state = r.state if r.state == "complete" else f"**{r.state}**"
        loss = fmt(r.val_loss, ".4f")
        lines.append(
            f"| {i} | {r.number} | {state} | {fmt(r.lr, '.3g')} | {fmt(r.n_embd, 'd')} | "
            f"{fmt(r.n_layer, 'd')} | {fmt(r.params, ',')} | {loss} | {fmt(r.step, 'd')} | "
            f"{fmt(r.val_bpb, '.4f')} | {fmt(r.seconds, '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def summary_line(table: list[TrialRow]) -> str:
    """'best: trial 3 (lr 0.003, 2x64): val loss 5.1234 | 12 trials: 7 complete, 5 pruned'"""
    counts: dict[str, int] = {}
    for r in table:
        counts[r.state] = counts.get(r.state, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in counts.items())
    best = next((r for r in table if r.state == "complete"), None)
    if best is None:
        return f"no complete trial yet | {len(table)} trials: {tally}"
    return (f"best: trial {best.number} (lr {best.lr:.3g}, {best.n_layer}x{best.n_embd}): "
            f"val loss {best.val_loss:.4f} | {len(table)} trials: {tally}")


def plot(table: list[TrialRow], path: Path, title: str) -> Path:
    """Left: val loss against step per trial (complete in colour, the best thick, pruned grey,
    ending in an x). Right: the last val loss against LR (marker size grows with width)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lx) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    complete = [r for r in table if r.state == "complete"]
    colors = plt.cm.viridis([i / max(1, len(complete) - 1) * 0.85 for i in range(len(complete))])
    widths = sorted({r.n_embd for r in table if r.n_embd})
    size = {w: 30 + 60 * i for i, w in enumerate(widths)}
    for r in table:
        if not r.curve or r.state == "complete":
            continue
        steps, losses = zip(*r.curve)
        ax.plot(steps, losses, "-", color="0.65", linewidth=1)
        ax.plot(steps[-1:], losses[-1:], "x", color="0.45")
        lx.scatter([r.lr], [r.val_loss], s=size.get(r.n_embd, 40), color="0.7", marker="x")
    for i, (r, color) in enumerate(zip(complete, colors)):
        if r.curve:
            steps, losses = zip(*r.curve)
            ax.plot(steps, losses, "-", color=color, linewidth=2.6 if i == 0 else 1.3,
                    label=f"#{r.number} lr {r.lr:.2g} {r.n_layer}x{r.n_embd}" if i < 8 else None)
        lx.scatter([r.lr], [r.val_loss], s=size.get(r.n_embd, 40), color=color, edgecolors="k",
                   zorder=3)
    ax.set_xlabel("step")
    ax.set_ylabel("val loss (nats/token)")
    ax.set_title(f"{title}: trials (grey: pruned)", fontsize=9)
    if complete:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    for w in widths:  # a legend of marker sizes
        lx.scatter([], [], s=size[w], color="white", edgecolors="k", label=f"width {w}")
    lx.set_xscale("log")
    lx.set_xlabel("learning rate")
    lx.set_ylabel("final val loss (pruned: last reported, grey x)")
    lx.set_title("loss against learning rate", fontsize=9)
    if widths:
        lx.legend(fontsize=7)
    lx.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_png(fig, path)


def write(study: optuna.Study, folder: Path, steps: int) -> tuple[str, Path]:
    """trials.jsonl, table.md and trials.png in `folder`; returns the printed text and the PNG path."""
    table = rows(study, steps)
    write_jsonl(table, folder / "trials.jsonl")
    text = markdown(table) + "\n" + summary_line(table) + "\n"
    atomic_write_text(folder / "table.md", text)
    return text, plot(table, folder / "trials.png", folder.name)

"""Training curves as PNGs (matplotlib): `loss.png` (train and validation loss from a metrics.jsonl)
and the RL panels (reward, KL, entropy, length... each on its own axis) of rl.png and the report."""

from __future__ import annotations

from pathlib import Path

from gptlab.fileio import atomic_open
from gptlab.train.tracker import read_metrics


def save_png(fig, path: str | Path) -> Path:
    """Write a matplotlib figure as PNG atomically (a reader never sees half a file) and free it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path


def plot_losses(
    metrics_path: str | Path, out_path: str | Path | None = None, title: str | None = None
) -> Path | None:
    """Plot `loss` and `val_loss` (and `val_bpb` on a second axis) against step.

    Returns the PNG path, or None when there is nothing to plot.
    """
    # Lazy: matplotlib is slow to import and Agg must be chosen before pyplot loads; only the
    # end of a stage draws a plot.
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe in a headless training job
    import matplotlib.pyplot as plt

    metrics_path = Path(metrics_path)
    out_path = Path(out_path) if out_path else metrics_path.with_name("loss.png")
    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    bpb = [(r["step"], r["val_bpb"]) for r in records if r.get("val_bpb") is not None]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss", color="tab:orange", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if bpb:
        ax2 = ax.twinx()
        ax2.plot(
            *zip(*bpb), "s--", label="val bits/byte", color="tab:green", markersize=3, alpha=0.7
        )
        ax2.set_ylabel("bits per byte")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right")
    ax.set_title(title or metrics_path.parent.name)
    fig.tight_layout()
    return save_png(fig, out_path)


# Each panel: (title, metrics drawn on its one axis). Series share a panel only when they share a
# scale (rollout and held-out accuracy are both fractions); a curve nobody logged draws nothing.
RL_PANELS: list[tuple[str, tuple[str, ...]]] = [
    ("reward", ("reward", "total_reward")),
    ("KL to the reference (per reply)", ("kl",)),
    ("entropy (nats/token)", ("entropy",)),
    ("reply length (tokens)", ("response_len", "heldout_len")),
    ("accuracy", ("accuracy", "heldout_accuracy", "heldout_sampled_accuracy")),
    ("held-out RM reward", ("heldout_reward",)),
    ("held-out task reward", ("heldout_task_reward", "heldout_sampled_task_reward")),
    ("held-out preference accuracy", ("heldout_pref_accuracy",)),
    ("clip fraction", ("clipfrac",)),
    ("loss", ("loss",)),
]


def plot_panels(records: list[dict], out_path: str | Path, title: str,
                panels: list[tuple[str, tuple[str, ...]]] = RL_PANELS, cols: int = 3) -> Path | None:
    """One axis per panel that has data (RL: reward, KL, entropy, length, ...), in a grid.

    Used for a run's own rl.png and for the report's RL figures, so both read the same.
    Returns the PNG path, or None when no panel has a point.
    """
    # Lazy, as above; a Figure (not pyplot) keeps no global state between calls.
    from matplotlib.figure import Figure

    drawn = []
    for label, keys in panels:
        series = [(k, [(r["step"], r[k]) for r in records
                       if isinstance(r.get(k), (int, float)) and "step" in r]) for k in keys]
        series = [(k, pts) for k, pts in series if pts]
        if series:
            drawn.append((label, series))
    if not drawn:
        return None
    rows = -(-len(drawn) // cols)
    fig = Figure(figsize=(4 * cols, 3.2 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flat
    for (label, series), ax in zip(drawn, axes):  # drawn first: zip takes no axis past the last panel
        for k, pts in series:
            ax.plot(*zip(*pts), "o-" if len(pts) < 30 else "-", markersize=3, linewidth=1, label=k)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    for ax in axes:  # the rest of the grid's last row
        ax.axis("off")
    fig.suptitle(title)
    return save_png(fig, out_path)

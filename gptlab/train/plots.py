"""`loss.png`: train and validation loss curves from a metrics.jsonl (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from gptlab.fileio import atomic_open
from gptlab.train.tracker import read_metrics


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
    with atomic_open(out_path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return out_path

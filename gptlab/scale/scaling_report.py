"""What a scaling series shows: the fit (fit.json), the table of runs (table.md) and scaling.png.

fit.json holds the fitted law, and for each budget the compute-optimal N and D two ways: from
the fitted law (approach 3) and from the vertex of that budget's iso-FLOP parabola through its
best run and the two beside it (approach 2, null when the best run is the smallest or largest size); beside them Chinchilla's ~20 tokens per parameter.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from gptlab.fileio import atomic_write_json, atomic_write_text
from gptlab.scale.scaling_fit import (
    CHINCHILLA_TOKENS_PER_PARAM,
    HUBER_DELTA,
    LawFit,
    fit_law,
    isoflop_minimum,
)
from gptlab.train.plots import save_png


def by_budget(records: list[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    groups: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r["budget"]].append(r)
    return {b: sorted(g, key=lambda r: r["n"]) for b, g in sorted(groups.items())}


def analyse(records: list[dict[str, Any]]) -> tuple[LawFit, dict[str, Any]]:
    """The law fitted to the runs (N, tokens trained, final val loss) and the fit.json summary."""
    law = fit_law([r["n"] for r in records], [r["tokens"] for r in records], [r["val_loss"] for r in records])
    budgets = []
    for budget, group in by_budget(records).items():
        n_opt, d_opt = law.optimal(budget)
        iso = isoflop_minimum([r["n"] for r in group], [r["val_loss"] for r in group])
        best = min(group, key=lambda r: r["val_loss"])
        budgets.append({
            "flops": budget, "fit_n_opt": n_opt, "fit_d_opt": d_opt, "fit_tokens_per_param": d_opt / n_opt,
            "fit_loss_opt": float(law.predict(n_opt, d_opt)),
            "isoflop_n_opt": iso, "isoflop_d_opt": budget / (6 * iso) if iso else None,
            "isoflop_tokens_per_param": budget / (6 * iso * iso) if iso else None,
            "best_run": best["name"], "best_val_loss": best["val_loss"],
        })
    summary = {
        "law": "L(N, D) = E + A / N^alpha + B / D^beta",
        "method": f"Huber loss (delta {HUBER_DELTA}) on log L, L-BFGS-B from the best points of a grid",
        "N": "parameters without the input embedding table", "D": "training tokens", "C": "6 N D",
        "fit": law.to_dict(), "at_bounds": law.at_bounds(), "budgets": budgets,
        "chinchilla_tokens_per_param": CHINCHILLA_TOKENS_PER_PARAM,
    }
    return law, summary


def table(records: list[dict[str, Any]]) -> str:
    """A markdown table of the runs, by budget then size, the best run of each budget in bold."""
    head = ("| budget (FLOPs) | size | N (no embedding) | params | steps | tokens | tokens/N | epochs "
            "| val loss | val bpb | s |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for budget, group in by_budget(records).items():
        best = min(r["val_loss"] for r in group)
        for r in group:
            loss = f"{r['val_loss']:.4f}"
            loss = f"**{loss}**" if r["val_loss"] == best else loss
            bpb = f"{r['val_bpb']:.4f}" if r.get("val_bpb") is not None else "-"
            rows.append(
                f"| {budget:.1e} | {r['size']} | {r['n']:,} | {r['params']:,} | {r['steps']} | "
                f"{r['tokens']:,} | {r['tokens'] / r['n']:.1f} | {r['epochs']:.2f} | {loss} | {bpb} | "
                f"{r['seconds']:.0f} |"
            )
    return head + "\n".join(rows) + "\n"


def fit_lines(summary: dict[str, Any]) -> str:
    """The fit and the compute-optimal split in a few readable lines."""
    f = summary["fit"]
    lines = [
        (
            f"fit: L = {f['E']:.3f} + {f['A']:.4g}/N^{f['alpha']:.3f} + {f['B']:.4g}/D^{f['beta']:.3f}"
            f"   (rmse of log L {f['rmse_log']:.4f} over {f['points']} runs)"
        ),
        "",
        (
            "| budget (FLOPs) | N_opt (fit) | D_opt (fit) | tokens/param (fit) | N_opt (iso-FLOP) "
            "| tokens/param (iso-FLOP) | Chinchilla |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for name in summary["at_bounds"]:
        lines.insert(1, f"note: {name} sits at a bound of the search: these runs do not pin it down")
    for b in summary["budgets"]:
        iso_n = f"{b['isoflop_n_opt']:,.0f}" if b["isoflop_n_opt"] else "past the sizes tried"
        iso_r = f"{b['isoflop_tokens_per_param']:.1f}" if b["isoflop_tokens_per_param"] else "-"
        lines.append(
            f"| {b['flops']:.1e} | {b['fit_n_opt']:,.0f} | {b['fit_d_opt']:,.0f} | "
            f"{b['fit_tokens_per_param']:.1f} | {iso_n} | {iso_r} | "
            f"~{summary['chinchilla_tokens_per_param']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write(folder: Path, records: list[dict[str, Any]]) -> tuple[str, Path]:
    """fit.json, table.md and scaling.png in `folder`; returns the printed text and the PNG path."""
    law, summary = analyse(records)
    atomic_write_json(folder / "fit.json", summary)
    text = table(records) + "\n" + fit_lines(summary)
    atomic_write_text(folder / "table.md", text)
    png = plot(law, records, folder / "scaling.png")
    return text, png


def plot(law: LawFit, records: list[dict[str, Any]], path: Path) -> Path:
    """Left: loss against N per budget, points and the fitted iso-FLOP curves, with each budget's
    compute-optimal point. Right: the compute-optimal frontier N_opt(C), D_opt(C), and 20 tokens/param."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_budget(records)
    fig, (ax, fr) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(groups)))
    n_all = np.array([r["n"] for r in records], dtype=float)
    grid = np.geomspace(n_all.min() / 2, n_all.max() * 2, 200)
    for color, (budget, group) in zip(colors, groups.items()):
        ax.plot([r["n"] for r in group], [r["val_loss"] for r in group], "o", color=color,
                label=f"C = {budget:.1e} FLOPs")
        ax.plot(grid, law.predict(grid, budget / (6 * grid)), "-", color=color, alpha=0.7)
        n_opt, d_opt = law.optimal(budget)
        ax.plot([n_opt], [law.predict(n_opt, d_opt)], "*", color=color, markersize=13, markeredgecolor="k")
    ax.set_xscale("log")
    ax.set_xlabel("N: parameters (without the embedding table)")
    ax.set_ylabel("final val loss (nats/token)")
    law_text = f"L = {law.E:.2f} + {law.A:.3g}/N^{law.alpha:.2f} + {law.B:.3g}/D^{law.beta:.2f}"
    ax.set_title(f"iso-FLOP curves and the fit: {law_text}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    budgets = np.array(list(groups))
    cs = np.geomspace(budgets.min() / 3, budgets.max() * 30, 100)
    opt = np.array([law.optimal(c) for c in cs])
    fr.plot(cs, opt[:, 0], "-", color="tab:blue", label="N_opt (fit)")
    fr.plot(cs, opt[:, 1], "-", color="tab:orange", label="D_opt (fit)")
    fr.plot(cs, np.sqrt(cs / (6 * CHINCHILLA_TOKENS_PER_PARAM)), ":", color="tab:blue",
            label=f"N at {CHINCHILLA_TOKENS_PER_PARAM:.0f} tokens/param (Chinchilla)")
    for budget, group in groups.items():
        iso = isoflop_minimum([r["n"] for r in group], [r["val_loss"] for r in group])
        if iso:
            fr.plot([budget], [iso], "s", color="tab:blue", markerfacecolor="none")
    fr.axvspan(budgets.min(), budgets.max(), color="grey", alpha=0.12, label="budgets measured")
    fr.set_xscale("log")
    fr.set_yscale("log")
    fr.set_xlabel("C: training FLOPs (6 N D)")
    fr.set_ylabel("compute-optimal N, D")
    fr.set_title("compute-optimal frontier (squares: iso-FLOP parabola minima)", fontsize=9)
    fr.legend(fontsize=8)
    fr.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_png(fig, path)

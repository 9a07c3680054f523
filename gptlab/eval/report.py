"""`report.md` for a run folder: every stage's metrics, plots, tokenizer table, config, code, hardware.

The summary's checks are computed from the files, never asserted (`gptlab.eval.report_checks`).

A stage or a result that is missing reads "not run"; the report is whatever exists. The stage
section shows what the summary's checks read, the stage's own held-out evaluation included
(`gptlab reward eval`'s rm/eval.json, RL's before / after).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: no global state, no display

from gptlab.errors import InputError
from gptlab.eval.heldout_stats import ITEMS, paired_summary
from gptlab.eval.report_checks import FAIL, PASS, SKIP, STAGES, Bounds, Check, checks
from gptlab.fileio import atomic_open, atomic_write_text
from gptlab.train import checkpoint
from gptlab.train.plots import plot_panels

__all__ = ["FAIL", "PASS", "SKIP", "STAGES", "Bounds", "Check", "checks", "collect", "write_report"]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _metrics(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: the rest of the curve still plots
            if isinstance(rec, dict):
                out.append(rec)
    return out


def collect(run: Path) -> dict[str, dict]:
    """Per stage: whether it exists, its eval results, train state and metrics records."""
    out = {}
    for stage in STAGES:
        d = run / stage
        data = _json(d / "eval.json") or {}
        if paired := paired_summary(d / ITEMS):  # from the per-prompt file: older runs gain newer statistics
            data["paired"] = paired
        out[stage] = {
            "exists": d.is_dir(),
            "eval": data.get("results", {}),
            # what the stage itself measured on held-out data (reward eval, RL before/after)
            "summary": {k: v for k, v in data.items() if k not in ("results", "metadata")},
            # a LoRA or actor-critic run keeps its loop state in checkpoint/, beside its outputs
            "state": _json(d / checkpoint.STATE) or _json(d / checkpoint.SUBFOLDER / checkpoint.STATE) or {},
            "metrics": _metrics(d / "metrics.jsonl"),
        }
    return out


# ---------------------------------------------------------------------------- plots


def _save(fig, path: Path) -> Path:
    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    return path


def plot_losses(stages: dict[str, dict], path: Path) -> Path | None:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    drawn = False
    for s, d in stages.items():
        for key, style in (("loss", "-"), ("val_loss", "o--")):
            pts = [(r["step"], r[key]) for r in d["metrics"] if r.get(key) is not None and "step" in r]
            if pts:
                ax.plot(*zip(*pts), style, label=f"{s} {key}", markersize=3, linewidth=1)
                drawn = True
    if not drawn:
        return None
    ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="loss by stage")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_rl(stages: dict[str, dict], stage: str, path: Path) -> Path | None:
    """An RL stage's curves (PPO in rl/, GRPO in grpo/), each group on its own axis, as its rl.png."""
    return plot_panels(stages[stage]["metrics"], path, f"{stage}: training curves and held-out scores")


def _bars(stages: dict[str, dict], metric: str, path: Path, title: str, baseline: bool) -> Path | None:
    keys = sorted({k for d in stages.values() for k, v in d["eval"].items() if v.get(metric) is not None})
    names = [s for s in STAGES if any(stages[s]["eval"].get(k, {}).get(metric) is not None for k in keys)]
    if not keys or not names:
        return None
    fig = Figure(figsize=(max(6, 1.6 * len(keys)), 4), layout="constrained")
    ax = fig.add_subplot()
    w = 0.8 / len(names)
    for j, s in enumerate(names):
        vals = [stages[s]["eval"].get(k, {}).get(metric) for k in keys]
        xs = [i + j * w for i, v in enumerate(vals) if v is not None]
        ax.bar(xs, [v for v in vals if v is not None], w, label=s)
    if baseline:
        for i, k in enumerate(keys):
            base = next((d["eval"][k].get("random_baseline") for d in stages.values() if k in d["eval"]), None)
            if base is not None:
                ax.hlines(base, i - w / 2, i + 0.8 - w / 2, colors="k", linestyles="dashed",
                          label="random baseline" if i == 0 else None)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(keys))], keys)
    ax.set(ylabel=metric, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


# ---------------------------------------------------------------------------- markdown


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]]


def _ci(ci: list[float] | None) -> str:
    return f"{ci[0]:+.3f} to {ci[1]:+.3f}" if ci else ""


def heldout_lines(summary: dict) -> list[str]:
    """The stage's own held-out evaluation, as the summary's check reads it: `gptlab reward eval`'s
    pairwise accuracy (rm/eval.json), or RL's before / after with paired gains; [] when there is none."""
    if summary.get("accuracy") is not None:
        rows = [("all", summary), *[(k, v) for k, v in sorted(summary.get("by_source", {}).items()) if v.get("pairs")]]
        cols = ["pairs", "accuracy", "roc_auc", "random_baseline", "longer_wins_baseline", "margin_over_best_baseline"]
        return ["", "Held-out pairs (`gptlab reward eval`):", "",
                *_table(["source", *cols, "margin 95% CI"],
                        [[name, *[r.get(c, "") for c in cols], _ci(r.get("margin_ci95"))] for name, r in rows])]
    before, after, paired = summary.get("before") or {}, summary.get("after") or {}, summary.get("paired") or {}
    if not before and not after:
        return []
    keys = sorted(set(before) | set(after))
    keys += sorted(f"heldout_{k}" for k in paired if f"heldout_{k}" not in keys)  # e.g. length-matched reward
    rows = []
    for k in keys:
        g = paired.get(k.removeprefix("heldout_"))
        was, now = before.get(k, (g or {}).get("before", "")), after.get(k, (g or {}).get("after", ""))
        rows.append([k, was, now, g["gain"] if g else "", _ci(g["ci95"] if g else None)])
    return ["", f"Held-out prompts, step {summary.get('before_step', '?')} (before) vs {summary.get('after_step', '?')} (after):",
            "", *_table(["score", "before", "after", "paired gain", "95% CI"], rows)]


def write_times(stages: dict, path: Path) -> Path:
    """Seconds of training and of evaluation per stage (eval.json's per-result seconds), in a file
    of their own: the clock is the one thing two runs of one commit never share."""
    rows = []
    for s in STAGES:
        d = stages[s]
        if not d["exists"]:
            continue
        st = d["state"] or {}
        ev = sum(r.get("seconds", 0.0) for r in d["eval"].values() if isinstance(r, dict))
        rows.append([s, st.get("step", ""), _fmt(st["elapsed"]) if "elapsed" in st else "", _fmt(ev) if ev else ""])
    md = ["# Times", "", *_table(["stage", "steps", "training s", "evaluation s"], rows)]
    atomic_write_text(path, "\n".join(md) + "\n")
    return path


def write_report(run: str | Path, out: str | Path | None = None, bounds: Bounds | None = None) -> Path:
    """Write `<run>/report.md` (+ PNGs in `<run>/report/`); returns the markdown path."""
    run = Path(run)
    if not run.is_dir():
        raise InputError(run, "run folder not found")
    out = Path(out) if out else run / "report.md"
    figs = out.parent / "report"
    figs.mkdir(parents=True, exist_ok=True)
    stages = collect(run)
    md = [f"# Run report: {run.name}", ""]
    md += ["## Summary", "", *_table(["stage", "claim", "result", "evidence"],
                                     [[c.stage, c.claim, c.mark, c.detail] for c in checks(stages, bounds)]), ""]
    times = write_times(stages, figs / "times.md")
    rel = times.relative_to(out.parent)
    md += [f"Wall-clock times per stage: [{rel}]({rel}) (kept out of this file: two runs of one commit give the same report).",
           ""]
    md += ["## Stages", ""]
    for s in STAGES:
        d = stages[s]
        md.append(f"### {s}")
        if not d["exists"]:
            md += ["", "not run", ""]
            continue
        st = d["state"]
        if st:
            md.append(f"\n{st.get('step', '?')} steps.")
        held = heldout_lines(d["summary"])
        if d["eval"]:
            cols = ["acc", "acc_norm", "centred_acc", "random_baseline", "length_baseline", "reward",
                    "entropy", "bpb", "unigram_bpb", "ppl", "n"]
            used = [c for c in cols if any(c in r for r in d["eval"].values())]
            md += ["", *_table(["result", *used], [[k, *[r.get(c, "") for c in used]] for k, r in sorted(d["eval"].items())])]
        md += held
        if not d["eval"] and not held:
            md += ["", "evaluation: not run"]
        md.append("")
    md += ["## Plots", ""]
    for name, fn in (("loss", lambda p: plot_losses(stages, p)), ("rl", lambda p: plot_rl(stages, "rl", p)),
                     ("grpo", lambda p: plot_rl(stages, "grpo", p)),
                     ("accuracy", lambda p: _bars(stages, "acc", p, "accuracy by stage", True)),
                     ("entropy", lambda p: _bars(stages, "entropy", p, "policy entropy by stage (nats/token)", False))):
        png = fn(figs / f"{name}.png")
        md.append(f"![{name}]({png.relative_to(out.parent)})" if png else f"{name}: not run")
        md.append("")
    tok = _json(run / "tokenizer" / "eval.json")
    md += ["## Tokenizer", ""]
    md += (_table(["text", "bytes", "tokens", "bytes/token"],
                  [[r["kind"], r["bytes"], r["tokens"], r["bytes_per_token"]] for r in tok.get("rows", [])])
           if tok else ["not run"])
    md += ["", "## Config, code version and hardware", ""]
    for s in STAGES:
        st = stages[s]["state"]
        if st:
            meta = st.get("metadata", {})
            code = (f"code: gptlab {meta.get('gptlab')} at commit `{meta.get('git_commit')}`; "
                    f"python {meta.get('python')}, torch {meta.get('torch')}; device {meta.get('device')} "
                    f"{meta.get('gpu', '')} on {meta.get('platform')} ({meta.get('cpu_count')} CPUs)")
            md += [f"### {s}", "", code, "",
                   "<details><summary>config</summary>", "", "```json",
                   json.dumps({k: st.get(k) for k in ("stage", "train_config") if k in st}, indent=1), "```",
                   "</details>", ""]
    atomic_write_text(out, "\n".join(md) + "\n")
    return out

"""`report.md` for a run folder: every stage's metrics, plots, tokenizer table, config, code, hardware.

The summary's checks are computed from the files, never asserted: each stage must beat the
previous one on the metric it exists for, or the report shows a cross.

    base  bits per byte on held-out text below the unigram (token-frequency) baseline
    sft   task accuracy above base's, on the tasks both were evaluated on: the paired gain on the
          same items (`gptlab eval`'s per-item scores) with its whole 95% interval above 0
    rm    held-out pairwise accuracy above the random (0.5) and the prefer-the-longer-reply baselines,
          by more than noise: the 95% bootstrap interval of the margin (over rankings) is above 0
    rl    (PPO) held-out reward-model score above the SFT model's (the policy before its first update),
          also with each pair of replies cut to the same length (so saying less cannot pass it)
    grpo  held-out accuracy of replies sampled as in its rollouts above the SFT model's (older runs:
          the greedy replies' task reward, the verifiable reward it maximises)

RL's checks compare the same held-out prompts before and after; where eval.json has their paired
gains, the tick needs the whole 95% interval above 0.

A stage or a result that is missing reads "not run"; the report is whatever exists. The stage
section shows what the summary's checks read, the stage's own held-out evaluation included
(`gptlab reward eval`'s rm/eval.json, RL's before / after).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: no global state, no display

from gptlab.errors import InputError
from gptlab.eval.metrics import paired_gain
from gptlab.fileio import atomic_open, atomic_write_text
from gptlab.train.plots import plot_panels

STAGES = ("base", "sft", "rm", "rl", "grpo")
PASS, FAIL, SKIP = "✅", "❌", "➖ not run"


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
        out[stage] = {
            "exists": d.is_dir(),
            "eval": data.get("results", {}),
            # what the stage itself measured on held-out data (reward eval, RL before/after)
            "summary": {k: v for k, v in data.items() if k not in ("results", "metadata")},
            "state": _json(d / "train_state.json") or {},
            "metrics": _metrics(d / "metrics.jsonl"),
        }
    return out


@dataclass
class Check:
    stage: str
    claim: str
    ok: bool | None  # None: not run
    detail: str

    @property
    def mark(self) -> str:
        return SKIP if self.ok is None else PASS if self.ok else FAIL


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _shared(a: dict, b: dict, metric: str, modes: tuple[str, ...]) -> list[str]:
    return sorted(k for k in a if k in b and a[k].get("mode") in modes
                  and a[k].get(metric) is not None and b[k].get(metric) is not None)


def checks(stages: dict[str, dict]) -> list[Check]:
    base, sft, rm, rl = (stages[s]["eval"] for s in STAGES[:4])
    out = []
    b = base.get("bpb")
    out.append(Check("base", "bits per byte below the unigram baseline", None if not b else b["bpb"] < b["unigram_bpb"],
                     f"{b['bpb']:.3f} vs {b['unigram_bpb']:.3f} bpb" if b else "no bpb result for base"))
    out.append(_sft_check(base, sft))
    out.append(_rm_check(rm, stages["rm"]["summary"]))
    out.append(_before_after(stages["rl"]["summary"], "rl", "held-out reward-model score above sft",
                             "heldout_reward", sft, rl, "reward"))
    grpo = stages["grpo"]["summary"]
    if grpo.get("after", {}).get("heldout_sampled_accuracy") is not None:
        claim, key = "held-out accuracy of sampled replies above sft", "heldout_sampled_accuracy"
    else:  # an older eval.json, or --eval-samples 0: greedy replies' graded reward
        claim, key = "held-out task reward above sft", "heldout_task_reward"
    out.append(_before_after(grpo, "grpo", claim, key, sft, stages["grpo"]["eval"], "reward"))
    return out


def paired_items(before: dict, after: dict, keys: list[str]) -> tuple[list[float], list[float]] | None:
    """Per-item scores of the items both evaluations share (`gptlab eval`'s "per_item": the same
    task, split, seed and index), pooled over `keys`; None if either lacks them (an older eval.json).

    >>> b = {"t/gen": {"per_item": {"id": ["0-a", "1-b"], "correct": [0, 1]}}}
    >>> a = {"t/gen": {"per_item": {"id": ["1-b", "2-c"], "correct": [1, 1]}}}
    >>> paired_items(b, a, ["t/gen"])
    ([1], [1])
    """
    xs: list[float] = []
    ys: list[float] = []
    for k in keys:
        pb, pa = before[k].get("per_item"), after[k].get("per_item")
        if not pb or not pa:
            return None
        then = dict(zip(pb["id"], pb["correct"]))
        for item, score in zip(pa["id"], pa["correct"]):
            if item in then:
                xs.append(then[item])
                ys.append(score)
    return xs, ys


def _sft_check(base: dict, sft: dict) -> Check:
    """Mean accuracy of the tasks both were evaluated on; with per-item scores, the paired gain on
    the same items, whose whole 95% interval must be above 0 (as RM, PPO and GRPO's checks)."""
    claim = "task accuracy above base"
    keys = _shared(base, sft, "acc", ("mc", "gen", "cot", "sc"))
    if not keys:
        return Check("sft", claim, None, "no task evaluated on both base and sft")
    x, y = _mean([base[k]["acc"] for k in keys]), _mean([sft[k]["acc"] for k in keys])
    detail = f"{y:.3f} vs {x:.3f} mean acc on {', '.join(keys)}"
    pairs = paired_items(base, sft, keys)
    if pairs is None:  # an older eval.json: no per-item scores, only the point estimates
        return Check("sft", claim, y > x, detail)
    if not pairs[0]:
        return Check("sft", claim + " (paired 95% CI above 0)", False,
                     f"{detail}; no item scored in both (evaluate base and sft with the same --limit and --seed)")
    g = paired_gain(*pairs)
    lo, hi = g["ci95"]
    detail += f", paired gain {g['gain']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, {g['n']} items)"
    if "fixed" in g:
        detail += f": {g['fixed']} fixed, {g['broken']} broken, sign test p {g['sign_test_p']:.2g}"
    return Check("sft", claim + " (paired 95% CI above 0)", lo > 0, detail)


def _rm_check(rm: dict, summary: dict) -> Check:
    """From `gptlab reward eval` (held-out rankings), else from `gptlab eval` on a reward model."""
    claim = "pairwise accuracy above baselines"
    if summary.get("accuracy") is not None:
        bar = max(summary.get("random_baseline", 0.5), summary.get("longer_wins_baseline", 0.0))
        detail = f"{summary['accuracy']:.3f} vs best baseline {bar:.3f} on {summary.get('pairs', '?')} held-out pairs"
        ci = summary.get("margin_ci95")
        if ci is None:  # an older eval.json: no interval, only the point estimate
            return Check("rm", claim, summary["accuracy"] > bar, detail)
        by = "; ".join(f"{k} {v['accuracy']:.3f} vs longer-wins {v['longer_wins_baseline']:.3f}"
                       for k, v in summary.get("by_source", {}).items() if v.get("pairs"))
        return Check("rm", claim + " (95% CI of the margin above 0)", ci[0] > 0,
                     f"{detail}, margin 95% CI {ci[0]:+.3f} to {ci[1]:+.3f}" + (f" ({by})" if by else ""))
    keys = [k for k, v in rm.items() if v.get("mode") == "rm"]
    if not keys:
        return Check("rm", claim, None, "no reward-model evaluation")
    acc = _mean([rm[k]["acc"] for k in keys])
    bar = max(_mean([rm[k]["random_baseline"] for k in keys]), _mean([rm[k]["length_baseline"] for k in keys]))
    return Check("rm", claim, acc > bar, f"{acc:.3f} vs best baseline {bar:.3f} on {', '.join(keys)}")


def _before_after(summary: dict, stage: str, claim: str, key: str, sft: dict, ev: dict, metric: str) -> Check:
    """RL's own held-out score after training vs before (= the SFT model), else eval results vs sft.

    With per-prompt scores (eval.json's "paired", the same held-out prompts before and after) the
    tick needs the whole 95% interval of the paired gain above 0, as the reward model's does.
    """
    before, after = summary.get("before", {}).get(key), summary.get("after", {}).get(key)
    if before is not None and after is not None:
        paired = summary.get("paired", {})
        gain = paired.get(key.removeprefix("heldout_"))
        detail = f"{after:.3f} vs {before:.3f} ({key}, step {summary.get('after_step')} vs {summary.get('before_step')})"
        if gain is not None:
            lo, hi = gain["ci95"]
            detail += f", paired gain {gain['gain']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, {gain['n']} prompts)"
            if "fixed" in gain:
                detail += f": {gain['fixed']} fixed, {gain['broken']} broken, sign test p {gain['sign_test_p']:.2g}"
        others = (("heldout_accuracy", "greedy accuracy"), ("heldout_task_reward", "greedy task reward"),
                  ("heldout_sampled_task_reward", "sampled task reward"))
        for other, name in others if key != "heldout_reward" else ():  # PPO's prompts: the RM is the judge
            if other != key and summary.get("after", {}).get(other) is not None:
                detail += f"; {name} {summary['after'][other]:.3f} vs {summary['before'][other]:.3f}"
        matched = paired.get("length_matched_reward") if key == "heldout_reward" else None
        if matched is not None:
            lo, hi = matched["ci95"]
            detail += f"; at matched length {matched['gain']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f})"
        if summary.get("after", {}).get("heldout_len") is not None:
            detail += f"; reply length {summary['before']['heldout_len']:.1f} -> {summary['after']['heldout_len']:.1f} tokens"
        if summary.get("kl_median") is not None:
            detail += f"; KL median {summary['kl_median']:.3f}"
        ok = gain["ci95"][0] > 0 if gain is not None else after > before
        if matched is not None:  # a reward model can be pleased by saying less: the gain must survive equal lengths
            ok = ok and matched["ci95"][0] > 0
            claim += ", also at matched length"
        return Check(stage, claim + (" (paired 95% CI above 0)" if gain is not None else ""), ok, detail)
    keys = _shared(sft, ev, metric, ("gen", "cot", "sc"))
    if not keys:
        return Check(stage, claim, None, f"no held-out {key} and no generative task evaluated on both sft and {stage}")
    x, y = _mean([sft[k][metric] for k in keys]), _mean([ev[k][metric] for k in keys])
    return Check(stage, claim, y > x, f"{y:.3f} vs {x:.3f} {metric} on {', '.join(keys)}")


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
        rows.append([k, before.get(k, ""), after.get(k, ""), g["gain"] if g else "", _ci(g["ci95"] if g else None)])
    return ["", f"Held-out prompts, step {summary.get('before_step', '?')} (before) vs {summary.get('after_step', '?')} (after):",
            "", *_table(["score", "before", "after", "paired gain", "95% CI"], rows)]


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
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
                                     [[c.stage, c.claim, c.mark, c.detail] for c in checks(stages)]), ""]
    md += ["## Stages", ""]
    for s in STAGES:
        d = stages[s]
        md.append(f"### {s}")
        if not d["exists"]:
            md += ["", "not run", ""]
            continue
        st = d["state"]
        if st:
            md.append(f"\n{st.get('step', '?')} steps, {_fmt(st.get('elapsed', '?'))} s of training.")
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

"""A scaling series: every model size trained at every compute budget, resumable; then the fit.

Budgets are training FLOPs C = 6·N·D (N: parameters without the input embedding table, D: training
tokens), so a run at budget C trains for D = C / (6N) tokens, rounded to whole steps of B x T
tokens; the table and the fit use the tokens actually trained. Each budget is one iso-FLOP curve
(Chinchilla's approach 2); all runs together feed the parametric fit (approach 3). Every run uses
the same LR, seed and schedule shape (cosine over its own length, as Chinchilla matched the cosine
to each run's length), and stops on steps, so a series is reproducible.

Every run is an ordinary `gptlab pretrain` folder, <out>/runs/<LxW>-<budget>/; a finished run is one
record of <out>/runs.jsonl, so running the command again reads it back instead of training again,
and new sizes or budgets add only their own runs. series.json keeps the settings the runs share:
a rerun with other settings is refused, since one law fitted to different experiments means nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptlab.commandline import to_dict
from gptlab.common import print0, run_dir
from gptlab.data.shards import ShardIndex
from gptlab.errors import InputError
from gptlab.fileio import atomic_write_json, atomic_write_text, read_json
from gptlab.scale import runner
from gptlab.scale.options import ScaleArgs

MIN_STEPS = 10  # fewer optimizer steps than this is warmup, not training
RUNS_FILE, SERIES_FILE = "runs.jsonl", "series.json"


@dataclass
class ScalingConfig(ScaleArgs):
    """Train a series of model sizes at several compute budgets (C = 6·N·D training FLOPs), fit the
    Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta (Huber loss in log space), and derive the
    compute-optimal N, D and tokens per parameter. Writes runs.jsonl, table.md, fit.json and
    scaling.png into --out (default runs/<run>/scaling); runs already done are read back."""

    sizes: tuple[str, ...] = ("1x32", "2x64", "3x96", "4x128")  # model sizes as LAYERSxWIDTH
    budgets: tuple[float, ...] = (3e11, 1e12, 3e12)  # compute budgets: training FLOPs C = 6·N·D of each run
    lr: float = 3e-3  # peak learning rate of every run (cosine to 10% over each run's own steps)


@dataclass(frozen=True)
class Size:
    """A model size: depth and width (heads and MLP follow, as in `gptlab pretrain`)."""

    n_layer: int
    n_embd: int

    @property
    def name(self) -> str:
        return f"{self.n_layer}x{self.n_embd}"

    @classmethod
    def parse(cls, text: str) -> Size:
        """'2x64' -> Size(n_layer=2, n_embd=64)."""
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
        if not m or int(m[1]) < 1 or int(m[2]) < 2:
            raise InputError(None, f"--sizes: {text!r} is not LAYERSxWIDTH (e.g. 2x64)")
        return cls(int(m[1]), int(m[2]))


@dataclass
class PlannedRun:
    """One (size, budget) cell of the series, with its parameter count and step budget."""

    size: Size
    budget: float
    params: int  # all parameters
    n: int  # parameters without the input embedding table: the N of the law
    steps: int

    @property
    def name(self) -> str:
        return f"{self.size.name}-{self.budget:.0e}".replace("+", "")


def series_folder(cfg: ScalingConfig) -> Path:
    return Path(cfg.out) if cfg.out is not None else run_dir(cfg.run, "scaling")


def check(cfg: ScalingConfig) -> list[Size]:
    """The parsed sizes, after one-line errors for a series that cannot be fitted."""
    cfg.check()
    sizes = [Size.parse(s) for s in cfg.sizes]
    if len(set(sizes)) < 2 or len(set(cfg.budgets)) < 2:
        raise InputError(None, "a scaling series needs at least 2 sizes and 2 budgets (--sizes, --budgets)")
    if len(set(sizes)) * len(set(cfg.budgets)) < 5:
        raise InputError(None, "the law has 5 parameters: give at least 5 (size, budget) runs")
    if min(cfg.budgets) <= 0 or cfg.lr <= 0:
        raise InputError(None, "--budgets and --lr must be positive")
    return sizes


def plan(cfg: ScalingConfig, sizes: list[Size]) -> list[PlannedRun]:
    """Every (size, budget), smallest budget first: D = C / 6N tokens, rounded to whole steps."""
    runs = []
    for budget in sorted(set(cfg.budgets)):
        for size in dict.fromkeys(sizes):
            probe = runner.pretrain_config(cfg, size.n_layer, size.n_embd, cfg.lr, 1, 1, Path("."))
            params, n = runner.model_size(probe)
            steps = round(budget / (6 * n) / cfg.tokens_per_step)
            if steps < MIN_STEPS:
                raise InputError(
                    None, f"budget {budget:.1e} gives {size.name} ({n:,} params) only {steps} steps "
                    f"of {cfg.tokens_per_step} tokens: raise --budgets or lower --batch-size",
                )
            runs.append(PlannedRun(size, budget, params, n, steps))
    return runs


def settings(cfg: ScalingConfig) -> dict[str, Any]:
    """What every run of a series shares (sizes and budgets may grow; the device does not matter)."""
    skip = ("sizes", "budgets", "device", "out", "run", "tokenizer")
    shared = {k: v for k, v in to_dict(cfg).items() if k not in skip}
    shared["shards"] = str(runner.shards_of(cfg).resolve())
    return shared


def open_series(folder: Path, shared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The finished runs of this folder by name, after checking they share these settings."""
    meta = folder / SERIES_FILE
    if meta.exists():
        old = read_json(meta).get("settings", {})
        changed = sorted(k for k in set(old) | set(shared) if old.get(k) != shared.get(k))
        if changed:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {shared.get(k)!r}" for k in changed)
            raise InputError(folder, f"holds a series with other settings ({diff}); use them, or a new --out")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta, {"settings": shared})
    done: dict[str, dict[str, Any]] = {}
    path = folder / RUNS_FILE
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["name"]] = rec
    return done


def record(run: PlannedRun, result: runner.RunResult, train_tokens: int) -> dict[str, Any]:
    """The runs.jsonl line of a finished run."""
    return {
        "name": run.name, "size": run.size.name, "n_layer": run.size.n_layer, "n_embd": run.size.n_embd,
        "budget": run.budget, "params": run.params, "n": run.n, "steps": result.steps,
        "tokens": result.tokens, "flops": 6.0 * run.n * result.tokens,
        "epochs": result.tokens / max(train_tokens, 1), "val_loss": result.val_loss,
        "val_bpb": result.metrics.get("val_bpb"), "seconds": round(result.seconds, 2),
        "folder": str(result.out),
    }


def run_series(cfg: ScalingConfig) -> list[dict[str, Any]]:
    """Train every run not yet in runs.jsonl (one at a time); all records, in plan order."""
    sizes = check(cfg)
    folder = series_folder(cfg)
    train_tokens = ShardIndex.load(runner.shards_of(cfg)).tokens("train")
    planned = plan(cfg, sizes)
    done = open_series(folder, settings(cfg))
    todo = [r for r in planned if r.name not in done]
    have = len(planned) - len(todo)
    print0(f"scaling: {len(planned)} runs ({have} done, {len(todo)} to train) -> {folder}")
    for i, run in enumerate(todo, 1):
        print0(f"\n=== run {i}/{len(todo)}: {run.name} | N {run.n:,} | {run.steps} steps | "
               f"{run.steps * cfg.tokens_per_step:,} tokens")
        pcfg = runner.pretrain_config(
            cfg, run.size.n_layer, run.size.n_embd, cfg.lr, run.steps, run.steps, folder / "runs" / run.name
        )
        done[run.name] = record(run, runner.train(pcfg), train_tokens)
        lines = "".join(json.dumps(r) + "\n" for r in done.values())
        atomic_write_text(folder / RUNS_FILE, lines)  # a kill loses at most the run in progress
    return [done[r.name] for r in planned]

"""`gptlab sweep`'s search: an Optuna study over learning rate, width and depth, with pruning.

Each trial is a real `gptlab pretrain` run (in-process, `gptlab.scale.runner`) of --steps steps;
its validation loss every --eval-every steps goes to `trial.report`, and the pruner may stop it
there. The objective is the final validation loss.

Pruner: the median stopping rule by default (Optuna's MedianPruner): stop a trial whose best loss
so far is worse than the median of the finished trials' losses at the same step, once
--startup-trials have finished. A sweep here runs one trial at a time on one machine, and a
dozen trials is typical: the median compares like with like (the same step) against every
finished trial and prunes about half of the poor ones, while it never stops a trial for being
merely second-best. Successive halving (`--pruner halving`, Optuna's asynchronous SHA, rungs at
--eval-every x 3^k) is more aggressive: with trials run one after another, every trial that is
not in the best third at a rung stops, including all but the best of the first few; it pays off
with many trials or many workers. Small-model curves cross (a high LR leads early and ends
worse), which is one more reason to prefer the gentler rule by default. Step 0 is not reported
(every fresh init scores about ln(vocab)), and the final evaluation never prunes (nothing is left
to save: the trial completes with its loss).

Resume: the study lives in <out>/study.db (SQLite, Optuna's RDB storage). Running the same command
again loads it: finished trials (complete, pruned, diverged) are not redone, and only the missing
trials up to --trials run. A trial that a kill or Ctrl-C left unfinished is queued again with the
same parameters. The settings that define the experiment are kept in the study; a rerun with
other settings is refused rather than mixed in. One process per sweep folder.

Reproducibility: every trial stops on steps, uses the same seed (init and data order), and the
samplers are seeded, so a fresh sweep on one machine repeats exactly; a resumed TPE sweep draws
its later trials from a restarted random stream (the grid does not depend on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from gptlab.commandline import to_dict
from gptlab.common import print0, run_dir
from gptlab.errors import InputError
from gptlab.scale import runner
from gptlab.scale.options import ScaleArgs

DEFAULT_TPE_TRIALS = 12
STUDY_NAME = "sweep"


@dataclass
class SweepConfig(ScaleArgs):
    """Search pretraining hyperparameters (learning rate, width, depth) with Optuna: a TPE search or
    a grid, pruning trials on their validation loss. Each trial is a real pretraining run of --steps
    steps. Resumable: the same command again continues the study in --out/study.db. Writes
    trials.jsonl, table.md and trials.png into --out (default runs/<run>/sweep)."""

    sampler: Literal["tpe", "grid"] = "tpe"  # tpe: Optuna's Bayesian search (seeded); grid: every combination of --lr, --n-embd, --n-layer
    trials: int | None = None  # finished trials the study should hold; a rerun adds only the missing ones (default: tpe 12, grid every point)
    lr: tuple[float, ...] = (3e-4, 1e-2)  # learning rates: the grid's values; tpe draws log-uniformly between the lowest and the highest
    n_embd: tuple[int, ...] = (32, 64, 128)  # model widths to try
    n_layer: tuple[int, ...] = (2,)  # model depths to try
    steps: int = 200  # optimizer steps of every trial: the budget (never seconds, so results repeat)
    eval_every: int = 25  # validation loss every N steps: what the pruner sees
    pruner: Literal["median", "halving", "none"] = "median"  # median stopping rule, asynchronous successive halving, or no pruning
    startup_trials: int = 3  # trials that must finish before any is pruned (also TPE's random start)


class Diverged(Exception):
    """A trial whose loss became NaN or infinite: a finished, failed trial (not retried)."""


class _AfterStartup(optuna.pruners.BasePruner):
    """`inner`, but no pruning until `startup` trials have completed. `inner.prune` runs always, so
    successive halving still records each trial's rung values."""

    def __init__(self, inner: optuna.pruners.BasePruner, startup: int):
        self.inner, self.startup = inner, startup

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        pruned = self.inner.prune(study, trial)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        return pruned and done >= self.startup


def sweep_folder(cfg: SweepConfig) -> Path:
    return Path(cfg.out) if cfg.out is not None else run_dir(cfg.run, "sweep")


def check(cfg: SweepConfig) -> int:
    """One-line errors for a sweep that cannot run; the number of trials the study should hold."""
    cfg.check()
    if not cfg.lr or not cfg.n_embd or not cfg.n_layer:
        raise InputError(None, "--lr, --n-embd and --n-layer each need at least one value")
    if min(cfg.lr) <= 0 or min(cfg.n_embd) < 2 or min(cfg.n_layer) < 1:
        raise InputError(None, "--lr must be positive, --n-embd at least 2, --n-layer at least 1")
    if cfg.steps < 1 or cfg.eval_every < 1 or cfg.startup_trials < 0:
        raise InputError(None, "--steps and --eval-every must be at least 1, --startup-trials at least 0")
    if cfg.eval_every > cfg.steps:
        raise InputError(
            None, f"--eval-every {cfg.eval_every} is past --steps {cfg.steps}: nothing to prune on"
        )
    grid = len(set(cfg.lr)) * len(set(cfg.n_embd)) * len(set(cfg.n_layer))
    target = cfg.trials if cfg.trials is not None else (grid if cfg.sampler == "grid" else DEFAULT_TPE_TRIALS)
    if target < 1:
        raise InputError(None, "--trials must be at least 1")
    return min(target, grid) if cfg.sampler == "grid" else target


def suggest(trial: Trial, cfg: SweepConfig) -> dict[str, Any]:
    """The trial's lr, n_embd and n_layer (the grid sampler answers these calls from its grid)."""
    lr = trial.suggest_float("lr", min(cfg.lr), max(cfg.lr), log=True)
    n_embd = trial.suggest_categorical("n_embd", sorted(set(cfg.n_embd)))
    n_layer = trial.suggest_categorical("n_layer", sorted(set(cfg.n_layer)))
    return {"lr": lr, "n_embd": int(n_embd), "n_layer": int(n_layer)}


def make_sampler(cfg: SweepConfig) -> optuna.samplers.BaseSampler:
    if cfg.sampler == "grid":
        space = {
            "lr": sorted(set(cfg.lr)), "n_embd": sorted(set(cfg.n_embd)), "n_layer": sorted(set(cfg.n_layer)),
        }
        return optuna.samplers.GridSampler(space, seed=cfg.seed)
    return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=max(1, cfg.startup_trials))


def make_pruner(cfg: SweepConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials)
    if cfg.pruner == "halving":
        sha = optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.eval_every, reduction_factor=3)
        return _AfterStartup(sha, cfg.startup_trials)
    return optuna.pruners.NopPruner()


def settings(cfg: SweepConfig) -> dict[str, Any]:
    """What defines the experiment: a rerun may change --trials and the device, nothing else."""
    skip = ("trials", "device", "out", "run", "tokenizer")
    shared = {k: v for k, v in to_dict(cfg).items() if k not in skip}
    shared["shards"] = str(runner.shards_of(cfg).resolve())
    return shared


def open_study(cfg: SweepConfig, folder: Path) -> optuna.Study:
    """The study in folder/study.db, created or loaded; refuses one made with other settings."""
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(folder / 'study.db').resolve()}"
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage, load_if_exists=True, direction="minimize",
        sampler=make_sampler(cfg), pruner=make_pruner(cfg),
    )
    shared = settings(cfg)
    old = study.user_attrs.get("settings")
    if old is None:
        study.set_user_attr("settings", shared)
    elif old != shared:
        changed = sorted(k for k in set(old) | set(shared) if old.get(k) != shared.get(k))
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {shared.get(k)!r}" for k in changed)
        raise InputError(folder, f"holds a sweep with other settings ({diff}); use them, or a new --out")
    return study


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue again, once, the trials a kill (still RUNNING) or Ctrl-C (FAIL, not diverged) left
    unfinished; the numbers of those trials."""
    handled = set(study.user_attrs.get("requeued", []))
    again = []
    for t in study.get_trials(deepcopy=False):
        if t.number in handled or not (t.state == TrialState.RUNNING or is_interrupted(t)):
            continue
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params)
        again.append(t.number)
    if again:
        study.set_user_attr("requeued", sorted(handled | set(again)))
    return again


def is_interrupted(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and "diverged" not in t.user_attrs


def finished(study: optuna.Study) -> int:
    """Trials that count towards --trials: complete, pruned or diverged."""
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done) if not is_interrupted(t))


def objective(cfg: SweepConfig, folder: Path) -> Callable[[Trial], float]:
    """A trial: pretrain with the suggested settings, reporting val loss at each evaluation."""

    def run_trial(trial: Trial) -> float:
        p = suggest(trial, cfg)
        pcfg = runner.pretrain_config(
            cfg, p["n_layer"], p["n_embd"], p["lr"], cfg.steps, cfg.eval_every,
            folder / "trials" / f"{trial.number:03d}",
        )
        params, n = runner.model_size(pcfg)
        trial.set_user_attr("params", params)
        trial.set_user_attr("n", n)
        shape = f"{p['n_layer']}x{p['n_embd']}"
        print0(f"\n=== trial {trial.number}: lr {p['lr']:.3g} | {shape} | {params:,} params")

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            loss = metrics["val_loss"]
            if not math.isfinite(loss):
                diverge(trial, f"val loss {loss} at step {step}")
            if step == 0:
                return  # every fresh init scores about ln(vocab): nothing to compare
            trial.report(loss, step)
            # At the last step there is nothing left to save: the trial completes.
            if step < cfg.steps and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        try:
            result = runner.train(pcfg, on_eval)
        except RuntimeError as e:  # the loop stops on a non-finite training loss
            if not str(e).startswith("loss is"):
                raise
            diverge(trial, str(e))
        trial.set_user_attr("val_bpb", result.metrics.get("val_bpb"))
        return result.val_loss

    return run_trial


def diverge(trial: Trial, why: str) -> None:
    trial.set_user_attr("diverged", why)
    raise Diverged(why)


def run_sweep(cfg: SweepConfig) -> optuna.Study:
    """Create or continue the study and run the trials it is missing, one at a time."""
    target = check(cfg)
    folder = sweep_folder(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happens
    study = open_study(cfg, folder)
    again = requeue_interrupted(study)
    todo = max(0, target - finished(study))
    note = f", {len(again)} unfinished queued again" if again else ""
    print0(f"sweep: {finished(study)} of {target} trials done{note}, {todo} to run -> {folder}")
    if todo:
        study.optimize(objective(cfg, folder), n_trials=todo, catch=(Diverged,))
    return study

"""`gptlab sweep`: a real (tiny) Optuna search over pretraining that prunes the trials its budget
shows are worse, finds the best one, and resumes without redoing finished trials."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from gptlab.cli import main as cli_main
from gptlab.scale import runner, sweep
from gptlab.train.tracker import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")



def tiny(shards_corpus: Path, out: Path, *extra: str) -> list[str]:
    """argv of a tiny sweep: 1-layer models 16 wide (unless `extra` says), 16-token rows, fp32 on CPU."""
    shape = [f for f in ("--n-embd", "16", "--n-layer", "1") if "--n-embd" not in extra]
    return [
        "sweep", "--shards", str(shards_corpus / "shards"), "--tokenizer", str(shards_corpus / "tokenizer"),
        "--out", str(out), "--device", "cpu", "--seq-len", "16", "--batch-size", "4",
        "--head-dim", "16", "--eval-tokens", "256", *shape, *extra,
    ]


def counting(monkeypatch) -> list[Path]:
    """Record every training run the sweep starts (the real runner still runs)."""
    calls: list[Path] = []
    real = runner.train

    def train(cfg, on_eval=None):
        calls.append(Path(cfg.out))
        return real(cfg, on_eval)

    monkeypatch.setattr(runner, "train", train)
    return calls


def load(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_the_budget_prunes_worse_trials_and_finds_the_best(shards_corpus, tmp_path, capsys):
    out = tmp_path / "sweep"
    # One learning rate that learns in 24 steps and three that barely move: the median rule,
    # after one finished trial, must stop some of the slow ones at an early evaluation.
    argv = tiny(shards_corpus, out, "--sampler", "grid", "--lr", "3e-2", "1e-4", "3e-5", "1e-5",
                "--steps", "24", "--eval-every", "4", "--startup-trials", "1")
    assert cli_main(argv) == 0
    rows = load(out)
    assert len(rows) == 4 and {r["lr"] for r in rows} == {3e-2, 1e-4, 3e-5, 1e-5}
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert len(pruned) > 0
    assert all(r["step"] < 24 for r in pruned)  # stopped early: the compute was saved
    best = rows[0]
    assert best["state"] == "complete" and best["lr"] == 3e-2 and best["step"] == 24
    assert best["val_loss"] < min(r["val_loss"] for r in rows[1:])
    # The steps reported to the pruner are the steps the loop evaluated at (metrics.jsonl).
    metrics = read_metrics(out / "trials" / f"{best['number']:03d}" / "metrics.jsonl")
    logged = [(r["step"], r["val_loss"]) for r in metrics if "val_loss" in r]
    assert [tuple(p) for p in best["curve"]] == [p for p in logged if p[0] > 0]
    table = (out / "table.md").read_text()
    assert table.count("**pruned**") == len(pruned) and "best: trial" in table
    assert (out / "trials.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert f"best: trial {best['number']} (lr 0.03" in printed


def test_a_rerun_continues_the_study_without_redoing_trials(shards_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    argv = tiny(shards_corpus, out, "--lr", "1e-3", "3e-2", "--n-embd", "16", "32", "--steps", "8",
                "--eval-every", "4", "--pruner", "none")
    calls = counting(monkeypatch)
    assert cli_main([*argv, "--trials", "2"]) == 0
    assert len(calls) == 2
    first = {r["number"]: r for r in load(out)}
    weights = out / "trials" / "000" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns

    assert cli_main([*argv, "--trials", "2"]) == 0  # the same command: nothing to do
    assert len(calls) == 2 and weights.stat().st_mtime_ns == stamp
    assert "2 of 2 trials done" in capsys.readouterr().out

    assert cli_main([*argv, "--trials", "3"]) == 0  # a larger budget: only the new trial runs
    assert calls[2:] == [out / "trials" / "002"]
    rows = {r["number"]: r for r in load(out)}
    assert set(rows) == {0, 1, 2}
    assert all(rows[n]["val_loss"] == first[n]["val_loss"] for n in first)


def test_a_trial_left_unfinished_by_a_kill_is_run_again(shards_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    argv = tiny(shards_corpus, out, "--lr", "1e-3", "3e-2", "--steps", "8", "--eval-every", "4",
                "--pruner", "none", "--trials", "1")
    cfg = sweep.SweepConfig(shards=shards_corpus / "shards", out=out, lr=(1e-3, 3e-2), steps=8, eval_every=4, pruner="none", seq_len=16, batch_size=4, head_dim=16, eval_tokens=256, n_embd=(16,), n_layer=(1,), tokenizer=shards_corpus / "tokenizer", device="cpu", trials=1)
    study = sweep.open_study(cfg, out)
    killed = study.ask()  # as a process killed mid-trial leaves it: RUNNING, params drawn
    killed.suggest_float("lr", 1e-3, 3e-2, log=True)
    killed.suggest_categorical("n_embd", [16])
    killed.suggest_categorical("n_layer", [1])
    lr = killed.params["lr"]
    calls = counting(monkeypatch)
    assert cli_main(argv) == 0
    assert "1 unfinished queued again" in capsys.readouterr().out
    rows = load(out)
    assert [r["state"] for r in rows] == ["complete", "interrupted"]
    assert rows[0]["lr"] == lr and len(calls) == 1
    assert cli_main(argv) == 0 and len(calls) == 1  # requeued once, never again


def test_a_diverged_trial_is_finished_not_retried(shards_corpus, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = tiny(shards_corpus, out, "--steps", "8", "--eval-every", "4", "--trials", "1")

    def diverges(cfg, on_eval=None):  # what the loop raises on a NaN training loss
        raise RuntimeError("loss is nan at step 3; try a lower --lr")

    monkeypatch.setattr(runner, "train", diverges)
    assert cli_main(argv) == 0
    assert [r["state"] for r in load(out)] == ["diverged"]
    assert cli_main(argv) == 0 and len(load(out)) == 1


def test_other_settings_in_the_same_folder_are_refused(shards_corpus, tmp_path, capsys):
    out = tmp_path / "sweep"
    base = tiny(shards_corpus, out, "--steps", "4", "--eval-every", "4", "--trials", "1")
    assert cli_main(base) == 0
    capsys.readouterr()
    assert cli_main([*base[:-2], "--trials", "1", "--lr", "1e-2", "2e-2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "lr" in err and "new --out" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eval-every", "50", "--steps", "10"], "past --steps"),
        (["--lr", "0"], "positive"),
        (["--sampler", "grid", "--trials", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_line(shards_corpus, tmp_path, capsys, extra, message):
    assert cli_main(tiny(shards_corpus, tmp_path / "s", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_halving_waits_for_the_startup_trials():
    """The startup wrapper lets successive halving record rungs but not prune before it may."""
    study = optuna.create_study(pruner=sweep._AfterStartup(
        optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2), startup=1))
    first = study.ask()
    first.report(1.0, 1)
    study.tell(first, state=optuna.trial.TrialState.PRUNED)  # not a completed trial
    second = study.ask()
    second.report(5.0, 1)
    assert not second.should_prune()  # SHA alone would prune it (worse than the first)
    study.tell(second, 5.0)
    third = study.ask()
    third.report(9.0, 1)
    assert third.should_prune()

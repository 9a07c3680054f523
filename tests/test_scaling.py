"""`gptlab scaling`: the Chinchilla fit recovers a known law, its compute-optimal split is the true
minimum, and a real (tiny) series of runs writes a fit that a rerun reads back without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gptlab.cli import main as cli_main
from gptlab.scale import runner
from gptlab.scale.scaling import Size
from gptlab.scale.scaling_fit import CHINCHILLA, LawFit, fit_law, isoflop_minimum

pytestmark = pytest.mark.usefixtures("one_thread")



def synthetic(true: LawFit, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Losses from `true` on a 5 x 4 grid of (N, D), times log-normal noise of relative size `noise`."""
    n, d = np.meshgrid(np.geomspace(1e5, 1e7, 5), np.geomspace(1e6, 1e9, 4))
    n, d = n.ravel(), d.ravel()
    loss = true.predict(n, d) * np.exp(np.random.default_rng(seed).normal(0, noise, n.size))
    return n, d, loss


@pytest.mark.parametrize("alpha, beta", [(0.34, 0.28), (0.5, 0.25), (0.2, 0.6)])
def test_the_fit_recovers_the_law_that_made_the_losses(alpha, beta):
    true = LawFit(E=1.8, A=400.0, B=1000.0, alpha=alpha, beta=beta, rmse_log=0.0, points=0)
    fit = fit_law(*synthetic(true, noise=0.0))
    assert fit.alpha == pytest.approx(alpha, abs=1e-3) and fit.beta == pytest.approx(beta, abs=1e-3)
    assert fit.E == pytest.approx(1.8, rel=1e-3) and fit.rmse_log < 1e-4 and fit.at_bounds() == []
    noisy = fit_law(*synthetic(true, noise=0.002))  # 0.2% noise: still close
    assert noisy.alpha == pytest.approx(alpha, abs=0.05) and noisy.beta == pytest.approx(beta, abs=0.05)


def test_the_huber_loss_shrugs_off_one_bad_run():
    true = LawFit(E=1.8, A=400.0, B=1000.0, alpha=0.34, beta=0.28, rmse_log=0.0, points=0)
    n, d, loss = synthetic(true, noise=0.0)
    loss[7] *= 1.3  # one diverged-ish run, 30% off
    fit = fit_law(n, d, loss)
    assert fit.alpha == pytest.approx(0.34, abs=0.02) and fit.beta == pytest.approx(0.28, abs=0.02)


@pytest.mark.parametrize("flops", [1e12, 5.76e23])
def test_the_compute_optimal_split_is_the_minimum_along_the_budget(flops):
    law = LawFit(**CHINCHILLA, rmse_log=0.0, points=0)
    n_opt, d_opt = law.optimal(flops)
    assert 6 * n_opt * d_opt == pytest.approx(flops)
    ns = np.geomspace(n_opt / 100, n_opt * 100, 20001)  # brute force along 6ND = C
    brute = ns[np.argmin(law.predict(ns, flops / (6 * ns)))]
    assert brute == pytest.approx(n_opt, rel=1e-3)
    assert law.tokens_per_param(flops) == pytest.approx(d_opt / n_opt)


def test_an_exponent_the_runs_cannot_pin_down_is_flagged():
    assert LawFit(E=0.0, A=1e14, B=20.0, alpha=3.0, beta=0.1, rmse_log=0.0, points=12).at_bounds() == ["alpha"]


def test_isoflop_minimum_is_the_parabola_vertex_or_none_past_the_edges():
    assert isoflop_minimum([1e5, 1e6, 1e7], [3.0, 2.0, 3.0]) == pytest.approx(1e6)
    assert isoflop_minimum([1e5, 1e6, 1e7], [3.0, 2.5, 2.2]) is None  # still falling: past the edge
    assert isoflop_minimum([1e5, 1e6], [3.0, 2.0]) is None
    # Only the best run and its neighbours count: the big sizes far up the curve do not skew it.
    assert isoflop_minimum([1e8, 1e4, 1e5, 1e6, 1e7], [6.0, 3.0, 2.9, 3.0, 4.5]) == pytest.approx(1e5)


def tiny(shards_corpus: Path, out: Path, *extra: str) -> list[str]:
    """argv of a tiny series: 3 sizes x 2 budgets of 16-token rows, fp32 on CPU."""
    return [
        "scaling", "--shards", str(shards_corpus / "shards"), "--tokenizer", str(shards_corpus / "tokenizer"),
        "--out", str(out), "--device", "cpu", "--seq-len", "16", "--batch-size", "4",
        "--head-dim", "16", "--eval-tokens", "256", "--sizes", "1x16", "1x32", "2x32",
        "--budgets", "1.5e8", "3e8", *extra,
    ]


def test_a_real_series_writes_the_fit_and_a_rerun_reads_it_back(shards_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scaling"
    assert cli_main(tiny(shards_corpus, out)) == 0
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 6 and {r["size"] for r in runs} == {"1x16", "1x32", "2x32"}
    for r in runs:
        assert r["tokens"] == r["steps"] * 4 * 16  # whole steps of B x T tokens
        assert r["flops"] == pytest.approx(r["budget"], rel=1 / r["steps"])  # C = 6ND, rounded to steps
        assert np.isfinite(r["val_loss"]) and r["val_loss"] < np.log(300)  # learned something
        assert (Path(r["folder"]) / "model.safetensors").exists()
    small = sorted((r for r in runs if r["size"] == "1x16"), key=lambda r: r["budget"])
    # twice the budget, twice the data
    assert small[1]["steps"] == pytest.approx(2 * small[0]["steps"], abs=1)
    fit = json.loads((out / "fit.json").read_text())
    assert set(fit["fit"]) >= {"E", "A", "B", "alpha", "beta"} and fit["fit"]["points"] == 6
    assert isinstance(fit["at_bounds"], list)
    assert [b["flops"] for b in fit["budgets"]] == [1.5e8, 3e8]
    for b in fit["budgets"]:
        assert 6 * b["fit_n_opt"] * b["fit_d_opt"] == pytest.approx(b["flops"])
    assert (out / "scaling.png").stat().st_size > 10_000
    assert "tokens/param" in (out / "table.md").read_text()
    assert "alpha" not in capsys.readouterr().err

    def no_training(cfg, on_eval=None):
        raise AssertionError(f"trained {cfg.out} again")

    monkeypatch.setattr(runner, "train", no_training)
    assert cli_main(tiny(shards_corpus, out)) == 0  # every run is read back; the fit is the same
    assert json.loads((out / "fit.json").read_text()) == fit
    assert cli_main(tiny(shards_corpus, out, "--lr", "1e-2")) == 2  # other settings: refused, not mixed
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lr" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sizes", "2x", "1x32"], "not LAYERSxWIDTH"),
        (["--sizes", "1x16", "1x32", "--budgets", "1e9", "2e9"], "at least 5"),
        (["--budgets", "1e3", "3e8"], "only 0 steps"),
    ],
)
def test_bad_input_is_one_line(shards_corpus, tmp_path, capsys, extra, message):
    argv = tiny(shards_corpus, tmp_path / "s")
    for flag in ("--sizes", "--budgets"):  # drop the defaults that `extra` replaces
        if flag in extra:
            i = argv.index(flag)
            j = next((k for k in range(i + 1, len(argv)) if argv[k].startswith("--")), len(argv))
            del argv[i:j]
    assert cli_main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_sizes_parse():
    assert Size.parse("2x64") == Size(2, 64) and Size.parse(" 3 x 96 ").name == "3x96"

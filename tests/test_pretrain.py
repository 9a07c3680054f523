"""`gptlab pretrain` end to end: help, a tiny real run (bpb, samples, curves), SIGKILL + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gptlab.cli import main as cli_main
from gptlab.data.shards import write_token_shards
from gptlab.model.io import load_model
from gptlab.train import checkpoint as ckpt
from gptlab.train.tracker import read_metrics

SMALL = [
    "--dtype",
    "fp32",  # bit-level comparisons: never the machine-dependent bf16 default
    "--preset",
    "nano",
    "--n-embd",
    "32",
    "--n-head",
    "2",
    "--seq-len",
    "32",
    "--batch-size",
    "4",
    "--lr",
    "3e-3",
    "--warmup",
    "2",
]


@pytest.fixture(scope="module")
def corpus(shards_corpus: Path) -> Path:
    return shards_corpus


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["pretrain", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--run",
        "--shards",
        "--tokenizer",
        "--out",
        "--preset",
        "--depth",
        "--n-embd",
        "--n-head",
        "--n-kv-head",
        "--seq-len",
        "--batch-size",
        "--grad-accum",
        "--steps",
        "--time-budget",
        "--lr",
        "--optimizer",
        "--schedule",
        "--warmup",
        "--eval-every",
        "--eval-tokens",
        "--sample-every",
        "--save-every",
        "--resume",
        "--device",
        "--dtype",
        "--compile",
        "--tracker",
        "--seed",
    ):
        assert flag in out


def test_a_short_run_learns_and_writes_the_stage_folder(corpus, tmp_path, capsys):
    from gptlab.stages.pretrain import main

    out = tmp_path / "base"
    rc = main(
        [
            "--shards",
            str(corpus / "shards"),
            "--tokenizer",
            str(corpus / "tokenizer"),
            "--out",
            str(out),
            *SMALL,
            "--steps",
            "40",
            "--eval-every",
            "20",
            "--sample-every",
            "20",
            "--save-every",
            "20",
            "--log-every",
            "10",
            "--sample-tokens",
            "12",
        ]
    )
    assert rc == 0
    for name in (
        "model.safetensors",
        "config.json",
        "optimizer.pt",
        "train_state.json",
        "metrics.jsonl",
        "samples.md",
        "loss.png",
    ):
        assert (out / name).exists(), name
    records = read_metrics(out / "metrics.jsonl")
    val = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in val] == [0, 20, 40]
    assert val[-1]["val_loss"] < val[0]["val_loss"] - 1.0
    assert 0 < val[-1]["val_bpb"] < val[0]["val_bpb"]
    assert [r["step"] for r in records if "loss" in r] == [10, 20, 30, 40]
    samples = (out / "samples.md").read_text()
    assert (
        samples.count("## step") == 3 and "## step 00000" in samples and "## step 00040" in samples
    )
    assert "ROMEO:" in samples
    model = load_model(out)  # what later stages do
    assert model.config.n_embd == 32 and model.config.vocab_size == 300
    state = json.loads((out / "train_state.json").read_text())
    assert (
        state["step"] == 40 and state["train_config"]["lr"] == 3e-3 and state["metadata"]["torch"]
    )
    assert (out / "run.yaml").exists()  # the resolved config (tested to re-run below)
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("step 00010/00040 | loss ") and "| tok/s " in line and "| eta " in line
        for line in lines
    )
    assert lines[-1].startswith("done: 40 steps")


def test_the_resolved_config_reruns_the_same_model(corpus, tmp_path):
    """`--config <out>/run.yaml` is the same run: bit-identical weights, whatever the flags were."""
    from gptlab.stages.pretrain import main

    first = tmp_path / "first"
    flags = ["--shards", str(corpus / "shards"), "--tokenizer", str(corpus / "tokenizer"), *SMALL,
             "--steps", "6", "--sample-every", "None", "--eval-every", "3", "--seed", "7"]
    assert main([*flags, "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["--config", str(first / "run.yaml"), "--out", str(again)]) == 0
    a, b = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in read_metrics(d / "metrics.jsonl") if "loss" in r] for d in (first, again)]
    assert len(losses[0]) == 6 and losses[0] == losses[1]


def _cmd(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gptlab",
        "pretrain",
        "--shards",
        str(corpus / "shards"),
        "--out",
        str(out),
        *SMALL,
        "--steps",
        "12",
        "--save-every",
        "3",
        "--eval-every",
        "6",
        "--sample-every",
        "None",
        *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    # One thread: identical float reductions in every process, and kind to a shared 2-core box.
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _kill_when(
    proc: subprocess.Popen, ready, timeout: float = 120.0, must_kill: bool = True
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            if must_kill:
                raise AssertionError(f"run ended (rc={proc.returncode}) before the kill point")
            return
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("kill point never reached")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _step(out: Path) -> int:
    return (
        json.loads((out / "train_state.json").read_text())["step"]
        if (out / "train_state.json").exists()
        else 0
    )


def test_sigkill_during_checkpoint_writes_then_resume_equals_uninterrupted(corpus, tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(_cmd(corpus, ref), env=_env(), cwd=tmp_path, check=True, capture_output=True)

    out = tmp_path / "run"
    slow = _env(GPTLAB_CKPT_TEST_SLEEP="0.25")  # pauses between checkpoint file writes
    devnull = subprocess.DEVNULL
    # Kill 1: while the step-6 checkpoint is half written (step 3 is the last good one).
    proc = subprocess.Popen(
        _cmd(corpus, out), env=slow, cwd=tmp_path, stdout=devnull, stderr=devnull
    )
    _kill_when(proc, lambda: _step(out) == 3 and (out / ckpt.PENDING / "config.json").exists())
    assert (out / ckpt.PENDING).exists()
    model = load_model(out)  # a reader that knows nothing of the journal still sees whole weights
    assert torch.equal(
        model.lm_head.weight, load_file(str(out / "model.safetensors"))["lm_head.weight"]
    )

    # Kill 2: after the commit point of a later checkpoint, while its files are being moved in.
    proc = subprocess.Popen(
        _cmd(corpus, out, "--resume"), env=slow, cwd=tmp_path, stdout=devnull, stderr=devnull
    )
    _kill_when(proc, lambda: (out / ckpt.COMMIT).exists())
    ckpt.recover(out)
    assert _step(out) in (6, 9, 12)

    # Kill 3 at a moment that is not a checkpoint write: between training steps (if it is quick
    # enough to finish first, the final resume below simply has nothing left to do).
    before = _step(out)
    proc = subprocess.Popen(
        _cmd(corpus, out, "--resume"), env=_env(), cwd=tmp_path, stdout=devnull, stderr=devnull
    )
    _kill_when(
        proc,
        lambda: any(r.get("step", 0) > before for r in read_metrics(out / "metrics.jsonl")),
        must_kill=False,
    )

    done = subprocess.run(
        _cmd(corpus, out, "--resume"),
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout

    def curve(folder: Path, key: str) -> list[tuple[int, float]]:
        return [(r["step"], r[key]) for r in read_metrics(folder / "metrics.jsonl") if key in r]

    assert curve(out, "loss") == curve(ref, "loss")  # exact: same data, RNG and optimizer state
    assert [s for s, _ in curve(out, "loss")] == list(range(1, 13))  # no duplicate or missing lines
    assert curve(out, "val_loss") == curve(ref, "val_loss")
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert (
        cli_main(["pretrain", "--shards", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "index.json" in capsys.readouterr().err
    write_token_shards(tmp_path / "s", {"train": [np.arange(100) % 7]}, 7, 0)
    assert (
        cli_main(
            [
                "pretrain",
                "--shards",
                str(tmp_path / "s"),
                "--out",
                str(tmp_path / "o"),
                "--preset",
                "huge",
            ]
        )
        == 2
    )
    assert "unknown preset" in capsys.readouterr().err

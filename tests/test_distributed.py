"""Data parallel: 2 gloo processes under torchrun equal 1 process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gptlab.data.shards import write_token_shards
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.train.distributed import DistInfo, grad_sync, init_distributed, unwrap, wrap_model
from gptlab.train.tracker import read_metrics

MODEL = [
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
    "--lr",
    "3e-3",
    "--warmup",
    "2",
    "--steps",
    "6",
    "--eval-every",
    "3",
    "--eval-tokens",
    "256",
    "--save-every",
    "None",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    text = b"To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. "
    docs = [
        np.concatenate([[256], np.frombuffer(text, np.uint8)[s : s + n]])
        for s, n in zip(rng.integers(0, 40, 300), rng.integers(20, 60, 300))
    ]
    write_token_shards(
        root / "shards",
        {"train": [np.concatenate(docs[:250])], "val": [np.concatenate(docs[250:])]},
        257,
        256,
    )
    return root


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    return {**env, "OMP_NUM_THREADS": "1"}


def _pretrain(root, out: str, batch: int, procs: int, *extra: str) -> subprocess.CompletedProcess:
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(procs),
        ]
        if procs > 1
        else [sys.executable]
    )
    cmd = [
        *launcher,
        "-m",
        "gptlab",
        "pretrain",
        "--shards",
        str(root / "shards"),
        "--out",
        str(root / out),
        *MODEL,
        "--batch-size",
        str(batch),
        *extra,
    ]
    done = subprocess.run(
        cmd, env=_env(), cwd=root, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _compare(root, a: str, b: str, atol: float) -> None:
    la = [(r["step"], r["loss"]) for r in read_metrics(root / a / "metrics.jsonl") if "loss" in r]
    lb = [(r["step"], r["loss"]) for r in read_metrics(root / b / "metrics.jsonl") if "loss" in r]
    assert [s for s, _ in la] == [s for s, _ in lb] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in la], [v for _, v in lb], atol=atol, rtol=0)
    va = [r["val_loss"] for r in read_metrics(root / a / "metrics.jsonl") if "val_loss" in r]
    vb = [r["val_loss"] for r in read_metrics(root / b / "metrics.jsonl") if "val_loss" in r]
    np.testing.assert_allclose(va, vb, atol=atol, rtol=0)
    wa, wb = (
        load_file(str(root / a / "model.safetensors")),
        load_file(str(root / b / "model.safetensors")),
    )
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0, msg=k)


def test_two_gloo_processes_equal_one_process_with_grad_accum(shards):
    # Global batch per step: 2 micro-steps x 4 rows, split 2 + 2 over the ranks (no_sync on the first).
    _pretrain(shards, "one", 4, 1, "--grad-accum", "2")
    two = _pretrain(shards, "two", 2, 2, "--grad-accum", "2")
    assert "x 2 ranks" in two.stdout and two.stdout.count("done:") == 1  # rank 0 prints alone
    _compare(shards, "one", "two", atol=1e-5)
    # FSDP2 (sharded parameters and optimizer state) on the same batch, also through torchrun.
    _pretrain(shards, "fsdp", 2, 2, "--grad-accum", "2", "--parallel", "fsdp")
    _compare(shards, "one", "fsdp", atol=1e-5)


def test_single_process_needs_no_process_group(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(rank=0, local_rank=0, world_size=1, device="cpu") and info.is_main
    assert not torch.distributed.is_initialized()
    model = GPT(
        ModelConfig(
            vocab_size=8,
            n_layer=1,
            n_embd=8,
            n_head=2,
            n_kv_head=2,
            intermediate_size=16,
            max_seq_len=4,
        )
    )
    assert wrap_model(model, info) is model and unwrap(model) is model
    with grad_sync(model, sync=False):  # a no-op without DDP, but gradients still flow
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)).backward()
    assert model.lm_head.weight.grad is not None

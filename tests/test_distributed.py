"""Data parallel: 2 gloo processes under torchrun equal 1 process on the same global batch.

Also: FSDP2 (with and without activation checkpointing) equals DDP, and a 2-node x 1-process
torchrun rehearsal on localhost (two launchers, as on two machines; docs/multinode.md) equals
1 process with gradient accumulation.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gptlab.data.shards import write_token_shards
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.train.distributed import (
    DistInfo,
    checkpoint_activations,
    grad_sync,
    init_distributed,
    unwrap,
    wrap_model,
)
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


def _command(root, out: str, batch: int, launcher: list[str], *extra: str) -> list[str]:
    return [
        *launcher,
        "-m",
        "gptlab",
        "--",  # ends torchrun's options (it would read --run as its --run-path)
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
    cmd = _command(root, out, batch, launcher, *extra)
    if procs == 1:
        cmd.remove("--")  # `python -m gptlab -- pretrain`: gptlab's own CLI takes no `--`
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


def test_fsdp2_with_activation_checkpointing_equals_ddp(shards):
    # fp32 throughout (--dtype fp32; FSDP2 without a MixedPrecisionPolicy), so the only
    # difference from DDP is the order of the gradient sums: a reduce-scatter of shards instead
    # of one all-reduce. That moves the last bit of a few gradients; Adam's normalisation can
    # carry it into the weights after 6 steps, hence atol 1e-5 (seen on CPU: losses 4.8e-7
    # apart, weights 1.2e-7).
    _pretrain(shards, "ddp", 2, 2, "--grad-accum", "2")
    _pretrain(shards, "fsdp_ac", 2, 2, "--grad-accum", "2", "--parallel", "fsdp",
              "--activation-checkpointing")  # fmt: skip
    _compare(shards, "ddp", "fsdp_ac", atol=1e-5)
    if (shards / "fsdp").exists():  # the first test's FSDP2 run, without checkpointing
        _compare(shards, "fsdp", "fsdp_ac", atol=0)  # recomputing changes no bit


def test_activation_checkpointing_recomputes_the_same_numbers():
    # Checkpointing recomputes the same kernels on the same inputs: bit-identical loss and
    # gradients, with dropout on (its random draws are replayed), and unchanged parameter names.
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=16, n_layer=2, n_embd=16, n_head=2, n_kv_head=1,
                      intermediate_size=32, max_seq_len=8, dropout=0.1)  # fmt: skip
    plain = GPT(cfg)
    ckpt = GPT(cfg)
    ckpt.load_state_dict(plain.state_dict())
    checkpoint_activations(ckpt)
    assert [n for n, _ in ckpt.named_parameters()] == [n for n, _ in plain.named_parameters()]
    x = torch.randint(0, 16, (2, 8))
    losses = []
    for model in (plain, ckpt):
        torch.manual_seed(1)
        loss = model(x, x)
        loss.backward()
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.equal(a.grad, b.grad), name
    with torch.no_grad():  # no gradients: the plain forward, nothing saved
        assert torch.equal(plain.eval()(x), ckpt.eval()(x))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_two_nodes_one_process_each_equal_one_process(shards, rendezvous):
    """Two torchrun launchers, as on two machines (docs/multinode.md), on localhost."""
    port = _free_port()
    if rendezvous == "static":  # node ranks as given; node 0 hosts the store at MASTER_ADDR:PORT
        join = ["--master-addr", "127.0.0.1", "--master-port", str(port)]
    else:  # elastic rendezvous; the launcher whose host matches the endpoint hosts the store
        join = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                "--rdzv-id", "gptlab-test"]  # fmt: skip
    procs = []
    for node in (0, 1):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                    "--nproc-per-node", "1", "--node-rank", str(node), *join]  # fmt: skip
        cmd = _command(shards, f"nodes_{rendezvous}", 2, launcher, "--grad-accum", "2")
        procs.append(subprocess.Popen(cmd, env=_env(), cwd=shards, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))  # fmt: skip
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, out in zip(procs, outs):
        assert p.returncode == 0, "\n".join(outs)
    text = "\n".join(outs)
    assert "x 2 ranks" in text and text.count("done:") == 1  # only global rank 0 prints
    if not (shards / "one").exists():
        _pretrain(shards, "one", 4, 1, "--grad-accum", "2")
    _compare(shards, "one", f"nodes_{rendezvous}", atol=1e-5)


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

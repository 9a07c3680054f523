"""Checkpoints: exact round trip, and a consistent last-good checkpoint after a kill at any point."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gptlab.errors import InputError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import load_model
from gptlab.train import checkpoint as ckpt
from gptlab.train.optim import build_optimizer


def model_and_optimizer(seed: int, optimizer: str = "adamw"):
    torch.manual_seed(seed)
    model = GPT(
        ModelConfig(
            vocab_size=11,
            n_layer=1,
            n_embd=16,
            n_head=2,
            n_kv_head=2,
            intermediate_size=32,
            max_seq_len=8,
        )
    )
    opt = build_optimizer(model, optimizer, lr=1e-2)
    x = torch.randint(0, 11, (2, 8))
    model(x, x).backward()
    opt.step()
    opt.zero_grad()
    return model, opt


def flat_optimizer_tensors(opt) -> list[torch.Tensor]:
    sd = opt.state_dict()
    parts = sd.get("optimizers", [sd])
    return [
        v
        for part in parts
        for s in part["state"].values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    ]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_round_trip_restores_weights_optimizer_and_rng(tmp_path, optimizer):
    model, opt = model_and_optimizer(0, optimizer)
    ckpt.save_checkpoint(tmp_path, model, opt, {"step": 7, "loader": {"epoch": 1, "position": 24}})
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ckpt.CHECKPOINT_FILES)

    model2, opt2 = model_and_optimizer(1, optimizer)
    torch.rand(5)  # move the RNGs away from the saved state
    state = ckpt.load_checkpoint(tmp_path, model2, opt2)
    assert state["step"] == 7 and state["loader"] == {"epoch": 1, "position": 24}
    assert (random.random(), float(np.random.rand())) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])
    for (name, a), b in zip(model.named_parameters(), model2.parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(flat_optimizer_tensors(opt), flat_optimizer_tensors(opt2)):
        assert torch.equal(a, b)
    # Other stages read the same folder with the plain model loader.
    assert torch.equal(load_model(tmp_path).lm_head.weight, model.lm_head.weight)
    # optimizer.pt is tensors and plain containers only.
    torch.load(tmp_path / "optimizer.pt", weights_only=True)


def test_half_written_new_checkpoint_still_loads_the_last_good_one(tmp_path):
    model, opt = model_and_optimizer(0)
    ckpt.save_checkpoint(tmp_path, model, opt, {"step": 3})
    pending = tmp_path / ckpt.PENDING
    pending.mkdir()
    (pending / "model.safetensors").write_bytes(b"\x00garbage, the writer was killed here")
    (pending / "config.json").write_text("{")
    model2, opt2 = model_and_optimizer(1)
    assert ckpt.load_checkpoint(tmp_path, model2, opt2)["step"] == 3
    assert torch.equal(model2.lm_head.weight, model.lm_head.weight)
    assert not pending.exists()


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so no `except Exception` handler swallows it."""


def test_a_kill_at_every_point_of_a_save_leaves_one_whole_checkpoint(tmp_path, monkeypatch):
    old_model, old_opt = model_and_optimizer(0)
    new_model, new_opt = model_and_optimizer(1)
    weights = {
        3: old_model.lm_head.weight.detach().clone(),
        4: new_model.lm_head.weight.detach().clone(),
    }
    real_replace, real_pause = os.replace, ckpt._test_pause
    outcomes = []
    for kill_at in range(1, 50):
        folder = tmp_path / f"k{kill_at}"
        ckpt.save_checkpoint(folder, old_model, old_opt, {"step": 3})
        events = {"n": 0, "kill_at": kill_at}

        def tick(events=events):
            events["n"] += 1
            if events["n"] == events["kill_at"]:
                raise Killed

        def replace(src, dst, tick=tick):
            tick()
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(ckpt, "_test_pause", lambda tick=tick: (tick(), real_pause()))
        try:
            ckpt.save_checkpoint(folder, new_model, new_opt, {"step": 4})
            finished = True
        except Killed:
            finished = False
        monkeypatch.undo()

        model, opt = model_and_optimizer(2)
        step = ckpt.load_checkpoint(folder, model, opt)["step"]
        outcomes.append(step)
        assert torch.equal(model.lm_head.weight, weights[step]), (
            f"kill at event {kill_at}: weights from another step"
        )
        on_disk = json.loads((folder / "train_state.json").read_text())
        assert on_disk["step"] == step
        assert not (folder / ckpt.PENDING).exists() and not (folder / ckpt.COMMIT).exists()
        if finished:
            break
    assert outcomes[0] == 3 and outcomes[-1] == 4 and len(outcomes) > 8
    assert outcomes == sorted(outcomes)  # once the commit point passes, the new checkpoint wins


def test_inconsistent_files_are_reported(tmp_path):
    model, opt = model_and_optimizer(0)
    ckpt.save_checkpoint(tmp_path, model, opt, {"step": 1})
    with open(tmp_path / "optimizer.pt", "ab") as f:
        f.write(b"extra")
    with pytest.raises(InputError, match="optimizer.pt.*does not match train_state.json"):
        ckpt.load_checkpoint(tmp_path, model, opt)
    with pytest.raises(InputError, match="no checkpoint here"):
        ckpt.load_checkpoint(tmp_path / "empty", model, opt)


def test_train_state_is_readable_json(tmp_path):
    model, opt = model_and_optimizer(0)
    ckpt.save_checkpoint(tmp_path, model, opt, {"step": 2, "train_config": {"lr": 0.01}})
    state = json.loads((tmp_path / "train_state.json").read_text())
    assert set(state) >= {"step", "rng", "files", "train_config"}
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert len((tmp_path / "train_state.json").read_text().splitlines()) < 60
    assert (
        load_file(str(tmp_path / "model.safetensors")).keys()
        == dict(model.named_parameters()).keys()
    )

"""The weight average (--ema) and the shape-batched Muon: the same math as their references,
checkpointed with the run, and the average is what a finished run saves."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from gptlab.data.loader import PackedLoader
from gptlab.train.ema import WeightAverage
from gptlab.train.loop import TrainConfig, Trainer
from gptlab.train.muon import BatchedMuon
from tests.test_loop import CPU, Crash, _shards, lm_loss, tiny_model


def test_batched_muon_matches_torch_muon_step_for_step():
    torch.manual_seed(0)
    shapes = [(8, 8)] * 3 + [(24, 8)] * 2 + [(8, 24), (5, 7)]  # shared, tall, wide, odd shapes
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for rule in ("original", "match_rms_adamw"):
        a = BatchedMuon(ours, lr=0.02, weight_decay=0.1, adjust_lr_fn=rule)
        b = torch.optim.Muon(ref, lr=0.02, weight_decay=0.1, adjust_lr_fn=rule)
        for _ in range(3):
            for p, q in zip(ours, ref):
                g = torch.randn_like(p)
                p.grad, q.grad = g.clone(), g.clone()
            a.step()
            b.step()
        for p, q in zip(ours, ref):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
        b2 = torch.optim.Muon(ref, lr=0.02)  # the state is torch's: either optimizer resumes the other
        b2.load_state_dict(a.state_dict())
        assert torch.equal(b2.state[ref[0]]["momentum_buffer"], a.state[ours[0]]["momentum_buffer"])


def test_weight_average_is_the_exponential_moving_average_and_swaps_back():
    p = torch.nn.Parameter(torch.zeros(3))
    avg = WeightAverage([p], decay=0.5)
    expected = None
    for value in (4.0, 8.0, 2.0):
        p.data.fill_(value)
        avg.step()
        # The average starts at the weights after the first update, not at the random init.
        expected = torch.full((3,), value) if expected is None else 0.5 * expected + 0.5 * value
    avg.swap()
    assert torch.allclose(p.data, expected) and torch.equal(avg.state[p]["average"], torch.full((3,), 2.0))
    avg.swap()
    assert torch.equal(p.data, torch.full((3,), 2.0))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage([p], decay=1.0)


def test_ema_run_saves_the_average_and_resumes_exactly_after_a_crash(tmp_path):
    shards = _shards(tmp_path)
    cfg = TrainConfig(dtype="fp32", max_steps=10, lr=5e-3, warmup_steps=2, save_every=4, optimizer="muon", ema=0.8)

    def trainer(out, loss_fn=lm_loss):
        loader = PackedLoader(shards, "train", batch_size=4, seq_len=16, seed=cfg.seed)
        return Trainer(tiny_model(seed=2), loader, loss_fn, cfg, out_dir=out, dist=CPU, verbose=False)

    ref = trainer(tmp_path / "ref")
    ref.fit()
    saved = load_file(str(tmp_path / "ref" / "model.safetensors"))
    raw = {n: ref.ema.state[p]["average"] for n, p in ref.raw_model.named_parameters()}  # swapped
    name = "layers.0.mlp.up_proj.weight"
    assert torch.equal(saved[name], dict(ref.raw_model.named_parameters())[name].detach())
    assert not torch.allclose(saved[name], raw[name])  # the model saved is the average, not the last step
    assert json.loads((tmp_path / "ref" / "train_state.json").read_text())["ema_in_weights"] is True

    calls = {"n": 0}

    def crashing_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 7:
            raise Crash
        return lm_loss(model, batch)

    with pytest.raises(Crash):
        trainer(tmp_path / "run", crashing_loss).fit()
    resumed = trainer(tmp_path / "run")
    assert resumed.fit(resume=True).resumed_from == 4
    for (n, a), b in zip(ref.raw_model.named_parameters(), resumed.raw_model.parameters()):
        assert torch.equal(a, b), n

    # Resuming the finished run for more steps trains on the raw weights, not on the average.
    longer = Trainer(tiny_model(seed=2), PackedLoader(shards, "train", batch_size=4, seq_len=16, seed=cfg.seed),
                     lm_loss, TrainConfig(**{**cfg.__dict__, "max_steps": 10}), out_dir=tmp_path / "ref",
                     dist=CPU, verbose=False)
    longer.load()
    assert torch.equal(dict(longer.raw_model.named_parameters())[name].detach(), raw[name])

"""The one loop: it learns, accumulation is exact, resume is exact, optimizer groups are right."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gptlab.data.loader import PackedLoader
from gptlab.data.shards import write_token_shards
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.train.distributed import DistInfo
from gptlab.train.loop import TrainConfig, Trainer
from gptlab.train.optim import CombinedOptimizer, build_optimizer, split_params
from gptlab.train.schedule import lr_multiplier
from gptlab.train.tracker import read_metrics, truncate_metrics

CPU = DistInfo(device="cpu")
VOCAB = 17


def tiny_model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = {
        "vocab_size": VOCAB,
        "n_layer": 2,
        "n_embd": 32,
        "n_head": 2,
        "n_kv_head": 1,
        "intermediate_size": 64,
        "max_seq_len": 16,
    }
    return GPT(ModelConfig(**{**cfg, **kw}))


def lm_loss(model, batch):
    x, y = batch
    return model(x, y), {"tokens": y.numel()}


def pattern_rows(n_rows: int, T: int = 16) -> torch.Tensor:
    """Rows of a learnable sequence (counting mod VOCAB from different offsets)."""
    starts = torch.arange(n_rows).unsqueeze(1) * 3
    return (starts + torch.arange(T + 1)) % VOCAB


def repeat(batch):
    while True:
        yield batch


def params_of(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_loss_goes_down_and_every_parameter_changes():
    model = tiny_model()
    before = params_of(model)
    rows = pattern_rows(8)
    cfg = TrainConfig(dtype="fp32", max_steps=40, lr=1e-2, warmup_steps=5, log_every=5)
    result = Trainer(
        model, repeat((rows[:, :-1], rows[:, 1:])), lm_loss, cfg, dist=CPU, verbose=False
    ).fit()
    losses = [h["loss"] for h in result.history]
    assert result.step == 40 and len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]
    after = params_of(model)
    for name in before:
        assert not torch.equal(before[name], after[name]), f"{name} did not change"


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_grad_accum_8x1_equals_1x8(optimizer):
    rows = pattern_rows(8)
    x, y = rows[:, :-1], rows[:, 1:]

    def run(accum: int):
        # float64: the invariant is exact maths; in fp32 Adam's g/sqrt(v) turns summation-order
        # noise in near-zero gradients into ~1e-6 differences, and Muon orthogonalises in bf16.
        model = tiny_model(seed=1).double()
        B = 8 // accum
        micro = [(x[i : i + B], y[i : i + B]) for i in range(0, 8, B)]
        cfg = TrainConfig(
            dtype="fp32",
            max_steps=2, grad_accum=accum, lr=1e-2, optimizer=optimizer, grad_clip=0.5
        )
        Trainer(model, iter(micro * 2), lm_loss, cfg, dist=CPU, verbose=False).fit()
        return params_of(model)

    one, eight = run(1), run(8)
    for name in one:
        torch.testing.assert_close(eight[name], one[name], atol=1e-9, rtol=0)


def _shards(tmp_path):
    rng = np.random.default_rng(0)
    docs = [
        np.concatenate(
            [[VOCAB - 1], (rng.integers(0, 5) + np.arange(rng.integers(10, 60))) % (VOCAB - 1)]
        )
        for _ in range(60)
    ]
    write_token_shards(tmp_path / "shards", {"train": [np.concatenate(docs)]}, VOCAB, VOCAB - 1)
    return tmp_path / "shards"


class Crash(Exception):
    pass


def test_resume_after_a_crash_continues_the_same_trajectory(tmp_path):
    shards = _shards(tmp_path)
    cfg = TrainConfig(dtype="fp32", max_steps=10, lr=5e-3, warmup_steps=2, save_every=4, optimizer="muon")

    def trainer(out, loss_fn=lm_loss):
        loader = PackedLoader(shards, "train", batch_size=4, seq_len=16, seed=cfg.seed)
        return Trainer(
            tiny_model(seed=2), loader, loss_fn, cfg, out_dir=out, dist=CPU, verbose=False
        )

    ref = trainer(tmp_path / "ref")
    ref_result = ref.fit()

    calls = {"n": 0}

    def crashing_loss(model, batch):  # dies in the middle of step 7 (after the step-4 checkpoint)
        calls["n"] += 1
        if calls["n"] == 7:
            torch.rand(3)  # consume RNG state before dying: a resume must not depend on it
            raise Crash
        return lm_loss(model, batch)

    with pytest.raises(Crash):
        trainer(tmp_path / "run", crashing_loss).fit()
    assert json.loads((tmp_path / "run" / "train_state.json").read_text())["step"] == 4

    resumed = trainer(tmp_path / "run")
    result = resumed.fit(resume=True)
    assert result.resumed_from == 4 and result.step == 10
    ref_losses = {h["step"]: h["loss"] for h in ref_result.history}
    for h in result.history:
        assert h["loss"] == ref_losses[h["step"]]  # exact, not approximate
    for (name, a), b in zip(ref.raw_model.named_parameters(), resumed.raw_model.parameters()):
        assert torch.equal(a, b), name


def test_time_budget_stops_training():
    rows = pattern_rows(2)
    cfg = TrainConfig(dtype="fp32", max_steps=None, max_time=0.3, lr=1e-3, log_every=1000)
    result = Trainer(
        tiny_model(), repeat((rows[:, :-1], rows[:, 1:])), lm_loss, cfg, dist=CPU, verbose=False
    ).fit()
    assert result.step >= 1 and result.elapsed >= 0.3
    assert len(result.history) == 1  # the final window is logged even off the log_every grid


def test_eval_and_sample_hooks_run_at_zero_every_n_and_at_the_end():
    rows = pattern_rows(2)
    seen = {"eval": [], "sample": []}

    def evaluate(model):
        assert not model.training and not torch.is_grad_enabled()
        seen["eval"].append(None)
        return {"val_loss": 1.0}

    cfg = TrainConfig(dtype="fp32", max_steps=7, eval_every=3, sample_every=5, log_every=7)
    Trainer(
        tiny_model(),
        repeat((rows[:, :-1], rows[:, 1:])),
        lm_loss,
        cfg,
        dist=CPU,
        verbose=False,
        evaluate=evaluate,
        sample=lambda m, step: seen["sample"].append(step),
    ).fit()
    assert len(seen["eval"]) == 4  # steps 0, 3, 6, 7
    assert seen["sample"] == [0, 5, 7]


def test_optimizer_groups_cover_every_parameter_once():
    for tie in (False, True):
        model = tiny_model(tie_embeddings=tie)
        for name in ("adamw", "muon"):
            opt = build_optimizer(model, name, lr=1e-3)
            ids = [id(p) for g in opt.param_groups for p in g["params"]]
            assert len(ids) == len(set(ids)) == len(list(model.parameters()))
            assert all("base_lr" in g for g in opt.param_groups)
    model = tiny_model()
    groups = split_params(model, muon=True)
    assert {n for n, _ in groups["no_decay"]} == {
        n for n, p in model.named_parameters() if p.dim() < 2
    }
    assert {n for n, _ in groups["embed"]} == {"embed_tokens.weight"}
    assert {n for n, _ in groups["decay"]} == {"lm_head.weight"}
    assert all(p.dim() == 2 and n.startswith("layers.") for n, p in groups["muon"])
    assert len(groups["muon"]) == 7 * model.config.n_layer  # q, k, v, o, gate, up, down
    opt = build_optimizer(model, "muon")
    assert isinstance(opt, CombinedOptimizer)
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {
        id(p) for _, p in groups["muon"]
    }
    assert muon.param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"  # one LR fits both
    # Separate LRs: Muon with Keller's scale at its own LR, embeddings at theirs.
    muon, adamw = build_optimizer(model, "muon", lr=1e-3, embed_lr=5e-3, muon_lr=0.02).optimizers
    assert (muon.param_groups[0]["lr"], muon.param_groups[0]["adjust_lr_fn"]) == (0.02, "original")
    emb = next(
        g for g in adamw.param_groups if any(p is model.embed_tokens.weight for p in g["params"])
    )
    assert emb["lr"] == emb["base_lr"] == 5e-3 and emb["weight_decay"] == 0.0


def test_adamw_matches_torch_reference_update():
    """Our wiring (groups, fused kernel, schedule multiplier 1) equals a hand-built AdamW."""
    rows = pattern_rows(4)
    ours = tiny_model(seed=3)
    ref = tiny_model(seed=3)
    cfg = TrainConfig(dtype="fp32", max_steps=3, lr=1e-2, weight_decay=0.1, grad_clip=None, min_lr_ratio=1.0)
    Trainer(ours, repeat((rows[:, :-1], rows[:, 1:])), lm_loss, cfg, dist=CPU, verbose=False).fit()
    decay = [p for n, p in ref.named_parameters() if p.dim() == 2 and "embed" not in n]
    no_decay = [p for n, p in ref.named_parameters() if p.dim() < 2 or "embed" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.9, 0.95),
        foreach=False,
    )
    for _ in range(3):
        ref(rows[:, :-1], rows[:, 1:]).backward()
        opt.step()
        opt.zero_grad()
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_schedules():
    assert lr_multiplier(0, 0.0, warmup_steps=4) == 0.25
    assert lr_multiplier(3, 0.03, warmup_steps=4) == 1.0
    assert lr_multiplier(50, 0.5, schedule="cosine", min_lr_ratio=0.0) == pytest.approx(0.5)
    assert lr_multiplier(100, 1.0, schedule="cosine", min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_multiplier(70, 0.7, schedule="wsd", decay_frac=0.2) == 1.0
    assert lr_multiplier(
        90, 0.9, schedule="wsd", decay_frac=0.2, min_lr_ratio=0.0
    ) == pytest.approx(0.5)
    assert lr_multiplier(100, 1.0, schedule="wsd", min_lr_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        lr_multiplier(0, 0.0, schedule="linear")


def test_metrics_truncation_drops_later_steps_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 0, "val_loss": 3}\n{"step": 4, "loss": 2}\n{"step": 5, "loss": 1}\n{"step": 6, "lo'
    )
    assert truncate_metrics(path, 4) == 2
    assert [r["step"] for r in read_metrics(path)] == [0, 4]

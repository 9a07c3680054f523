"""Evaluation items are held out from SFT and RL data by construction: no test prompt of any
scorable task occurs in the SFT mixture, and few-shot examples come from the train split."""

from __future__ import annotations

from test_eval_cli import PLAYS

from gptlab.data.chats import Chat, Turn
from gptlab.eval.generative import shot_messages
from gptlab.tasks import get_task, mixture
from gptlab.tasks.base import normalise, reply_text

SCORABLE = ["play_speaker", "play_title", "arithmetic", "identity"]  # synthetic plays: one-line speeches


def _user_texts(convs) -> set[str]:
    return {normalise(reply_text(m["content"])) for c in convs for m in c if m["role"] == "user"}


def test_no_eval_item_appears_in_training_data():
    chats = [Chat(f"c{i}", None, None, [Turn("A", f"hello {i}"), Turn("B", f"hi {i}")]) for i in range(20)]
    sizes = {"chitchat": 20, "arithmetic": 400, "identity": 60, "play_speaker": 300, "play_title": 300}
    train = mixture.sft_mixture("train", sizes, plays=PLAYS, chats=chats)
    seen = _user_texts(train)
    train_text = " | ".join(normalise(reply_text(m["content"])) for c in train for m in c)
    for name in SCORABLE:
        kw = {"plays": PLAYS} if name.startswith(("play", "continue")) else {}
        task = get_task(name, "test", **kw)
        assert len(task) > 0, name
        for i in range(min(len(task), 60)):
            item = task.example(i)
            prompt = normalise(reply_text(task.prompt(item)[-1]["content"]))
            if name != "identity":  # identity questions are templated; its answers are what is held out
                assert prompt not in seen, (name, prompt)
            if name == "arithmetic":
                assert f"calculator {normalise(item.meta['expression'])} " not in train_text + " "
            if name.startswith(("play", "continue")):
                assert normalise(item.meta.get("quote") or item.meta["prefix"]) not in train_text


def test_few_shot_examples_come_from_train():
    task = get_task("arithmetic", "test", size=50)
    train_exprs = {get_task("arithmetic", "train").example(i).meta["expression"] for i in range(3)}
    test_exprs = {task.example(i).meta["expression"] for i in range(len(task))}
    shots = shot_messages(task, 3)
    shot_exprs = {p["text"].split(": ")[1] for m in shots if m["role"] == "assistant"
                  for p in m["content"] if p["type"] == "tool_call"}
    assert shot_exprs == train_exprs and not shot_exprs & test_exprs

"""Demonstrations by retrieval: BM25 finds the planted nearest question first and never the item
itself, picks are deterministic under a seed and differ between random and bm25, shots come from
the train split, and `gptlab prompt shots` / `gptlab eval --shot-pick` run end to end on a tiny model."""

from __future__ import annotations

import doctest
import json

import pytest
import torch

from gptlab import cli
from gptlab.eval import shots as shots_mod
from gptlab.eval import shots_cli
from gptlab.eval.generative import shot_messages
from gptlab.eval.shots import ShotPicker, item_shots, question_text
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tasks import get_task
from gptlab.tasks.base import Item, Task
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples


class Listed(Task):
    """A task whose questions are the given strings (answer: the question's index)."""

    name = "listed"

    def __init__(self, split: str = "train", seed: int = 0, questions: tuple[str, ...] = ()):
        super().__init__(split, seed)
        self.questions = list(questions)

    def __len__(self) -> int:
        return len(self.questions)

    def example(self, i: int) -> Item:
        q = self.questions[self._index(i)]
        return Item([{"role": "user", "content": q}, {"role": "assistant", "content": str(i)}], str(i))

    def evaluate(self, item: Item, completion: str) -> bool:
        return completion.strip() == item.answer


POOL = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Which planet is known as the red planet?",
    "Who wrote the play about a Danish prince?",
    "How many legs does an octopus have, and how many arms?",  # the planted near neighbour
    "What colour is the sky on a clear day?",
)
QUERY = "How many legs does an octopus have?"


def test_docstrings_hold():
    assert doctest.testmod(shots_mod).failed == 0 and doctest.testmod(shots_cli).failed == 0


def test_bm25_returns_the_planted_nearest_first_and_never_the_item_itself():
    pool = Listed(questions=(*POOL, QUERY))  # the query itself is in the pool, last
    picker = ShotPicker(pool, "bm25")
    item = Listed("test", questions=(QUERY,)).example(0)
    got = picker.pick(item, 3)
    assert got[0] == 4  # the octopus question, though it is longer than the spider one
    assert got[1] == 1  # then the other "how many legs" question
    assert len(pool) - 1 not in got  # the item's own question is never a shot
    assert len(picker.pick(item, 10)) == len(POOL)  # all but the item, none twice
    assert len(set(picker.pick(item, 10))) == len(POOL)
    for how in ("random", "first"):  # the other picks skip the item too
        assert len(pool) - 1 not in ShotPicker(pool, how).pick(item, len(POOL))
    # nearest last: the planted neighbour's question sits right before the test question
    msgs = picker.messages(item, 3)
    assert [m["content"] for m in msgs if m["role"] == "user"][-1] == POOL[4]


def test_a_question_sharing_no_word_gets_pool_order():
    picker = ShotPicker(Listed(questions=POOL), "bm25")
    assert picker.pick(Listed("test", questions=("zzz qqq",)).example(0), 2) == [0, 1]


def test_random_and_bm25_picks_differ_and_repeat_under_a_seed():
    task = get_task("arithmetic", "test", size=12)
    items = [task.example(i) for i in range(12)]
    rnd = item_shots(task, items, 3, "random", seed=0)
    assert rnd == item_shots(task, items, 3, "random", seed=0)  # deterministic
    assert rnd != item_shots(task, items, 3, "random", seed=1)  # and the seed matters
    assert len({json.dumps(s) for s in rnd}) > 6  # drawn per item, not one set for all
    near = item_shots(task, items, 3, "bm25", seed=0)
    assert near == item_shots(task, items, 3, "bm25", seed=5)  # retrieval does not use the seed
    assert near != rnd
    first = item_shots(task, items, 3, "first")
    assert all(s == first[0] for s in first) and first[0] == shot_messages(task, 3)  # the old default
    # every shot is a train item with its reference reply, never a test question
    test_questions = {question_text(task, it) for it in get_task("arithmetic", "test")}
    for s in near + rnd:
        assert len(s) == 6 and [m["role"] for m in s] == ["user", "assistant"] * 3
        assert not {m["content"] for m in s[::2]} & test_questions
    # bm25 shots share words with their question more than random ones do
    def overlap(shots: list[list[dict]]) -> float:
        words = [set(question_text(task, it).lower().split()) for it in items]
        return sum(len(w & set(m["content"].lower().split())) for w, s in zip(words, shots) for m in s[::2])
    assert overlap(near) > overlap(rnd)
    with pytest.raises(ValueError, match="shot pick"):
        ShotPicker(task, "nearest")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tok = Tokenizer.train([builtin_samples()["english"]] * 2, 300)
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=2, n_embd=48, n_head=2, n_kv_head=2,
                      intermediate_size=96, max_seq_len=1024)
    root = tmp_path_factory.mktemp("runs") / "x"
    save_model(root / "sft", GPT(cfg))
    tok.save(root / "tokenizer")
    return root


def test_prompt_shots_and_eval_shot_pick_end_to_end(tiny_run, capsys, one_thread):
    out = tiny_run / "shots.json"
    argv = ["prompt", "shots", "--from", str(tiny_run / "sft"), "--task", "arithmetic", "--shots", "2", "--test", "4",
            "--max-new-tokens", "4", "--bootstrap", "100", "--device", "cpu", "--out", str(out)]
    assert cli.main([*argv, "--picks", "random", "bm25", "first"]) == 0
    got = json.loads(out.read_text())
    assert [r["pick"] for r in got["rows"]] == ["random", "bm25", "first"] and got["baseline"] == "random"
    assert got["mode"] == "gen" and got["n_test"] == 4 and all(len(v) == 4 for v in got["per_item"].values())
    assert "gain" not in got["rows"][0] and got["rows"][1]["gain"]["n"] == 4
    assert "| bm25 |" in capsys.readouterr().out
    assert cli.main([*argv, "--picks", "bm25"]) == 2  # one pick compares nothing
    assert "--picks needs at least two" in capsys.readouterr().err
    ev = tiny_run / "eval.json"
    assert cli.main(["eval", "--from", str(tiny_run / "sft"), "--tasks", "arithmetic:3", "--shots", "2",
                     "--shot-pick", "bm25", "--max-new-tokens", "4", "--device", "cpu", "--out", str(ev)]) == 0
    rec = json.loads(ev.read_text())["results"]["arithmetic/gen"]
    assert rec["shot_pick"] == "bm25" and rec["shots"] == 2 and rec["n"] == 3

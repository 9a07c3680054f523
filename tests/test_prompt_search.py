"""Prompt search: phrases placed where asked, candidate files checked, a planted phrase found on the
dev split and confirmed on held-out items, a phrase that only fits the dev items exposed there, and
`gptlab prompt search` end to end on a tiny model."""

from __future__ import annotations

import doctest
import json

import pytest
from conftest import lively_gpt

from gptlab import cli
from gptlab.errors import InputError
from gptlab.eval import prompt_search as ps
from gptlab.eval.generative import generate_scores
from gptlab.infer.loading import make_engine
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tasks import get_task
from gptlab.tasks.base import Item, Task
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train([builtin_samples()["english"]] * 2, 300)


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    return lively_gpt(tok.vocab_size, max_seq_len=256)


class Echo(Task):
    """Questions whose right answer is whatever `answers` holds: the test plants it from the
    model's own greedy replies under one phrase, so that phrase, and only it, is right."""

    name = "echo"

    def __init__(self, split: str = "train", seed: int = 0, answers: dict | None = None, n: int = 12):
        super().__init__(split, seed)
        self.answers, self.n = answers if answers is not None else {}, n

    def __len__(self) -> int:
        return self.n

    def example(self, i: int) -> Item:
        q = f"{self.split} question {i}: what is the colour of {['sky', 'sea', 'grass'][i % 3]}?"
        return Item([{"role": "user", "content": q}, {"role": "assistant", "content": "?"}],
                    self.answers.get(q, "(no answer planted)"))

    def evaluate(self, item: Item, completion: str) -> bool:
        return completion.strip() == item.answer


def plant(engine, tok, task: Task, phrase: str) -> dict[str, str]:
    """{question: the model's greedy reply when its reply starts with `phrase`}."""
    items = [task.example(i) for i in range(len(task))]
    ids = [ps.render(tok, task, it, phrase, "reply") for it in items]
    res = generate_scores(engine, tok, task, items, max_new_tokens=6, prompt_ids=ids)
    return {it.messages[0]["content"]: r.completion.strip() for it, r in zip(items, res)}


def split_pair(answers: dict[str, str]) -> tuple[tuple[Task, list[Item]], tuple[Task, list[Item]]]:
    dev, test = Echo("train", answers=answers), Echo("test", answers=answers)
    return (dev, [dev.example(i) for i in range(len(dev))]), (test, [test.example(i) for i in range(len(test))])


def test_docstring_example_holds():
    assert doctest.testmod(ps).failed == 0


def test_phrase_goes_where_placement_says(tok):
    task = get_task("arithmetic", "test", size=2)
    item = task.example(0)
    question = task.prompt(item)[-1]["content"]
    plain = tok.render_prompt(task.prompt(item))
    assert ps.render(tok, task, item, "", "question") == plain  # no phrase: the plain prompt
    assert ps.render(tok, task, item, "Think.", "reply") == plain + tok.encode("Think.")
    after = tok.decode(ps.render(tok, task, item, "Think.", "question"))
    before = tok.decode(ps.render(tok, task, item, "Think.", "instruction"))
    assert f"{question}\n\nThink." in after and f"Think.\n\n{question}" in before
    assert task.prompt(item)[-1]["content"] == question  # the item itself is untouched
    with pytest.raises(ValueError, match="placement"):
        ps.render(tok, task, item, "x", "middle")


def test_candidate_files_name_the_bad_line(tmp_path):
    good = tmp_path / "p.txt"
    good.write_text("# mine\nLet's think step by step.\n\nFirst,\n")
    assert ps.read_candidates(good) == ["Let's think step by step.", "First,"]
    dup = tmp_path / "dup.txt"
    dup.write_text("First,\nAgain.\nFirst,\n")
    with pytest.raises(InputError, match="listed twice") as e:
        ps.read_candidates(dup)
    assert e.value.line == 3 and "dup.txt:3" in str(e.value)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="no phrases"):
        ps.read_candidates(empty)
    with pytest.raises(InputError, match="not found"):
        ps.read_candidates(tmp_path / "missing.txt")


def test_a_planted_phrase_is_chosen_on_dev_and_holds_on_held_out_items(tok, model):
    engine = make_engine(model, tok, max_batch=16)
    planted = "Let us reason it out."
    answers = plant(engine, tok, Echo("train"), planted) | plant(engine, tok, Echo("test"), planted)
    assert len(set(answers.values())) > len(answers) // 2  # answers differ by question, not one string
    dev, test = split_pair(answers)
    decoys = ["Abrakadabra!", "It's a beautiful day."]
    got = ps.search(engine, tok, dev, test, [decoys[0], planted, decoys[1]], "reply", max_new_tokens=6, n_boot=200)
    rows = {r["phrase"]: r for r in got["rows"]}
    assert got["chosen"] == planted and got["rows"][0]["phrase"] == planted
    assert rows[planted]["dev_acc"] == 1.0 and rows[planted]["test_acc"] == 1.0
    assert rows[planted]["test_rank"] == 1 and rows[planted]["test_ci95"] == [1.0, 1.0]
    # the model must react to the phrase, or the test proves nothing: no phrase is mostly wrong
    assert rows[ps.NONE]["test_acc"] < 0.5
    assert got["gain"]["gain"] > 0.5 and got["gain"]["ci95"][0] > 0 and got["gain"]["fixed"] > got["gain"]["broken"]
    assert set(got["per_item"]) == {ps.NONE, planted, *decoys}
    text = ps.table(got)
    assert f'| 1 | "{planted}" |' in text and "gain over no phrase +" in text


def test_a_phrase_that_fits_only_the_dev_items_is_exposed_on_held_out_items(tok, model):
    """Chosen on dev, reported on test: a phrase planted on the dev items alone wins the search,
    but the held-out table ranks the phrase planted on the test items first and shows no gain."""
    engine = make_engine(model, tok, max_batch=16)
    on_dev, on_test = "Let us reason it out.", "Abrakadabra!"
    answers = plant(engine, tok, Echo("train"), on_dev) | plant(engine, tok, Echo("test"), on_test)
    dev, test = split_pair(answers)
    got = ps.search(engine, tok, dev, test, [on_test, on_dev], "reply", max_new_tokens=6, n_boot=200)
    rows = {r["phrase"]: r for r in got["rows"]}
    assert got["chosen"] == on_dev and rows[on_dev]["dev_acc"] == 1.0
    assert rows[on_test]["test_rank"] == 1 and rows[on_test]["test_acc"] == 1.0
    assert rows[on_dev]["test_acc"] < 0.5 and got["gain"]["gain"] < 0.5
    # --top 1 carries only the dev winner (and no phrase) to the held-out items
    top = ps.search(engine, tok, dev, test, [on_test, on_dev], "reply", max_new_tokens=6, top=1, n_boot=200)
    assert set(top["per_item"]) == {ps.NONE, on_dev}
    assert "test_acc" not in {r["phrase"]: r for r in top["rows"]}[on_test]


def test_ties_on_dev_keep_no_phrase_and_the_table_says_what_the_best_phrase_did(tok, model):
    engine = make_engine(model, tok, max_batch=16)
    dev, test = split_pair({})  # nothing planted: every reply is wrong, every phrase ties at 0
    got = ps.search(engine, tok, dev, test, ["First,", "Abrakadabra!"], "question", max_new_tokens=4, top=1,
                    n_boot=200)
    assert got["chosen"] == ps.NONE and got["best_phrase"] == "First,"  # ties: no phrase, then listed order
    assert got["gain"]["gain"] == 0.0 and got["best_phrase_gain"]["gain"] == 0.0
    assert set(got["per_item"]) == {ps.NONE, "First,"}  # --top 1 still carries the best phrase
    assert 'best phrase on dev: "First,"' in ps.table(got)


def test_prompt_search_command_end_to_end(tmp_path, tok, model, capsys):
    save_model(tmp_path / "run" / "sft", model)
    tok.save(tmp_path / "run" / "tokenizer")
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("Let's think step by step.\nFirst,\n")
    out = tmp_path / "search.json"
    argv = ["prompt", "search", "--from", str(tmp_path / "run" / "sft"), "--task", "arithmetic", "--dev", "3",
            "--test", "4", "--candidates", str(phrases), "--max-new-tokens", "4", "--bootstrap", "200",
            "--device", "cpu", "--out", str(out)]
    assert cli.main(argv) == 0
    got = json.loads(out.read_text())
    assert {r["phrase"] for r in got["rows"]} == {"", "Let's think step by step.", "First,"}
    assert got["n_dev"] == 3 and got["n_test"] == 4 and got["task"] == "arithmetic"
    assert all(len(v) == 4 for v in got["per_item"].values())
    assert "held-out acc (95% CI)" in capsys.readouterr().out
    assert cli.main([*argv[:-2], "--out", str(out), "--dev", "0"]) == 2  # one clear error line, no traceback
    assert "--dev must be >= 1" in capsys.readouterr().err

"""Tasks on small plays written as iambic Markdown in tmp_path and parsed for real, tiny chats,
and generated problems: determinism, train/test disjointness, MC labels, scoring both ways, the
calculator call of the arithmetic reference, the SFT mixture. No corpus cache, no network."""

from __future__ import annotations

import doctest
import random

import pytest

from gptlab import tasks
from gptlab.data.chats import Chat, Turn
from gptlab.data.plays import parse_play
from gptlab.data.splits import in_test
from gptlab.tasks import (
    TASKS,
    arithmetic,
    base,
    chitchat,
    get_task,
    identity,
    mixture,
    reference_completion,
)
from gptlab.tasks import plays as play_tasks
from gptlab.tasks.base import normalise

TEST_FRAC = 0.3
PLAY_TASKS = ["play_speaker", "play_title", "continue_speech"]
WORDS = [
    "crown",
    "sword",
    "night",
    "love",
    "grief",
    "honour",
    "blood",
    "moon",
    "king",
    "queen",
    "ghost",
    "storm",
    "letter",
    "ring",
    "forest",
    "tower",
    "river",
    "prince",
    "heaven",
    "grave",
    "wine",
    "fool",
    "dream",
    "fortune",
    "poison",
    "gold",
    "mercy",
    "oath",
]


def write_play(path, title: str, rng: random.Random, dup: list[str] | None) -> None:
    """An iambic-style play: 2 acts x 4 scenes x 10 speeches by 5 named speakers (+ ALL)."""
    cast = [f"{title.split()[-1].upper()} {r}" for r in ("LORD", "LADY", "DUKE", "NURSE", "FOOL")]
    out = [f"# {title}", ""]
    for act, roman in ((1, "I"), (2, "II")):
        out += [f"## ACT {roman}", ""]
        for sc, sroman in enumerate(("I", "II", "III", "IV"), 1):
            out += [f"### SCENE {sroman}. A room.", "", f"_Enter {cast[0]}_", ""]
            for k in range(10):
                who = "ALL" if k == 9 else cast[k % 5]
                lines = [
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 7))).capitalize()
                    for _ in range(rng.randint(1, 4))
                ]
                if dup is not None and k == 0:
                    lines = dup  # the same speech opens every scene: some train, some test
                out += [f"**{who}**  ", *[line + "  " for line in lines], ""]
    path.write_text("\n".join(out) + "\n")


@pytest.fixture(scope="module")
def plays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plays")
    rng = random.Random(1)
    dup = ["Crown and sword and ring of gold", "Upon my oath the moon is fair"]
    parsed = []
    for n, title in enumerate(
        ["The Tale Alpha", "The Tale Beta", "The Tale Gamma", "The Tale Delta"]
    ):
        slug = title.lower().replace(" ", "-")
        md = folder / f"{slug}.md"
        write_play(md, title, rng, dup if n == 0 else None)
        parsed.append(parse_play(md.read_text(), slug, "comedies", str(md)))
    return parsed


@pytest.fixture(scope="module")
def chats():
    rng = random.Random(2)
    out = []
    for c in range(40):
        turns = [
            Turn("AB"[t % 2], f"chat {c} turn {t} {rng.choice(WORDS)}") for t in range(1 + c % 6)
        ]
        out.append(Chat(f"chat-{c:03d}", None, None, turns))
    return out


def play_task(name, split, plays, seed=0, **kw):
    return get_task(name, split, seed=seed, plays=plays, test_frac=TEST_FRAC, **kw)


def all_items(task):
    return [task.example(i) for i in range(len(task))]


def text_of(item) -> str:
    """Everything an item shows, normalised, padded for whole-word containment checks."""
    return " " + " | ".join(normalise(base.reply_text(m["content"])) for m in item.messages) + " "


def test_registry_and_bad_arguments(plays):
    assert set(TASKS) == {"play_speaker", "play_title", "continue_speech", "arithmetic",
                          "arithmetic_long", "identity", "chitchat", "gym"}  # fmt: skip
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        get_task("identity", "dev")
    task = get_task("identity", "test")
    with pytest.raises(IndexError):
        task.example(len(task))


@pytest.mark.parametrize("name", PLAY_TASKS)
def test_play_tasks_are_deterministic_and_seeded(plays, name):
    a, b = play_task(name, "train", plays), play_task(name, "train", plays)
    assert len(a) > 20 and all_items(a) == all_items(b)
    other = play_task(name, "train", plays, seed=1)
    assert [i.meta["key"] for i in all_items(other)] != [i.meta["key"] for i in all_items(a)]
    assert sorted(i.meta["key"] for i in all_items(other)) == sorted(
        i.meta["key"] for i in all_items(a)
    )


def test_play_splits_are_disjoint_by_scene_and_text(plays):
    train = {n: all_items(play_task(n, "train", plays)) for n in PLAY_TASKS}
    test = {n: all_items(play_task(n, "test", plays)) for n in PLAY_TASKS}
    assert all(test.values()), "the fixture must give every task some test items"
    scene = lambda item: item.meta["key"].split("#")[0]
    train_scenes = {scene(i) for items in train.values() for i in items}
    test_scenes = {scene(i) for items in test.values() for i in items}
    assert train_scenes and test_scenes and not train_scenes & test_scenes
    assert all(in_test(s, TEST_FRAC) for s in test_scenes)
    haystack = "\n".join(text_of(i) for items in train.values() for i in items)
    for n, items in test.items():
        for item in items:
            pieces = (
                [item.meta["prefix"], item.answer]
                if n == "continue_speech"
                else [item.meta["quote"]]
            )
            for p in pieces:
                assert f" {normalise(p)} " not in haystack, (n, item.meta["key"], p)


def test_speech_repeated_in_a_train_scene_is_dropped_from_test(plays):
    dup = "crown and sword and ring of gold"
    alpha = plays[0]
    keys = [play_tasks.scene_key(alpha, s) for s in alpha.scenes]
    assert {in_test(k, TEST_FRAC) for k in keys} == {True, False}  # the fixture's premise
    train_quotes = [i.meta["quote"] for i in all_items(play_task("play_title", "train", plays))]
    test_quotes = [i.meta["quote"] for i in all_items(play_task("play_title", "test", plays))]
    assert any(normalise(q).startswith(dup) for q in train_quotes)
    assert not any(normalise(q).startswith(dup) for q in test_quotes)


def test_multiple_choice_labels_and_scoring(plays):
    speaker = play_task("play_speaker", "test", plays)
    title = play_task("play_title", "test", plays)
    titles = {p.title for p in plays}
    for task in (speaker, title):
        for item in all_items(task):
            assert len(item.choices) == 4 == len(set(item.choices))
            assert item.choices[item.label] == item.answer == item.messages[-1]["content"]
            assert task.evaluate(item, reference_completion(item))
            assert task.evaluate(item, f"I believe it is {item.answer.lower()}.")
            wrong = item.choices[(item.label + 1) % 4]
            assert not task.evaluate(item, wrong)
            assert not task.evaluate(item, f"{item.answer} or {wrong}")  # hedging is not an answer
            assert task.reward(item, wrong) == 0.0 and task.reward(item, item.answer) == 1.0
            assert task.prompt(item) == item.messages[:-1]
            assert item.meta["quote"] in item.messages[0]["content"]
    for item in all_items(speaker):
        play = next(p for p in plays if item.meta["key"].startswith(p.slug + "/"))
        assert set(item.choices) <= set(speaker.cast(play)) and "ALL" not in item.choices
        assert item.answer.split()[0] == play.title.split()[-1].upper()
    for item in all_items(title):
        assert set(item.choices) <= titles
    listed = play_task("play_speaker", "test", plays, show_choices=True).example(0)
    assert all(
        f"{'ABCD'[j]}. {c}" in listed.messages[0]["content"] for j, c in enumerate(listed.choices)
    )


def test_continue_speech_scores_the_first_words(plays):
    task = play_task("continue_speech", "test", plays)
    item = task.example(0)
    assert item.meta["prefix"] in item.messages[0]["content"]
    assert task.evaluate(item, reference_completion(item))
    words = item.answer.split()
    assert task.evaluate(item, " ".join(words[:5]).upper() + " and then something else")
    assert not task.evaluate(item, " ".join(words[:4] + ["xyzzy"] + words[5:]))
    assert not task.evaluate(item, "")


def independent_value(call: str) -> int:
    """'2+3*4-5' -> 9, by splitting on + and - then multiplying within terms (no eval)."""
    total, sign, term = 0, 1, ""
    for ch in call + "+":
        if ch in "+-":
            prod = 1
            for factor in term.split("*"):
                prod *= int(factor)
            total += sign * prod
            sign, term = (1 if ch == "+" else -1), ""
        else:
            term += ch
    return total


def test_arithmetic_reference_calls_the_calculator_and_is_right():
    task = get_task("arithmetic", "train", size=300)
    assert len(task) == 300
    words = 0
    for item in all_items(task):
        parts = item.messages[-1]["content"]
        assert [p["type"] for p in parts] == ["text", "tool_call", "tool_result", "text"]
        tool, _, expr = parts[1]["text"].partition(": ")
        assert tool == "calculator" and expr == item.meta["expression"]
        assert [int(x) for x in expr.replace("-", "+").replace("*", "+").split("+")] == item.meta[
            "operands"
        ]
        assert independent_value(expr) == int(item.answer) == int(parts[2]["text"])
        assert parts[3]["text"] == f"The answer is {item.answer}."
        assert task.evaluate(item, reference_completion(item))
        assert not task.evaluate(item, f"The answer is {int(item.answer) + 1}.")
        assert not task.evaluate(item, "I do not know.")
        words += item.meta["word"]
        if item.meta["word"] and "left" in item.messages[0]["content"]:
            assert int(item.answer) >= 0  # nobody gives away more than they have
    assert 50 < words < 250  # both forms present


def test_long_arithmetic_is_longer_and_its_held_out_expressions_were_never_trained_on():
    """arithmetic_long: bare 3-4 operand expressions with right references, disjoint splits, and
    no held-out expression in `arithmetic`'s train split (the SFT mixture's source)."""
    train, test = get_task("arithmetic_long", "train", size=400), get_task("arithmetic_long", "test", size=100)
    short_train = {it.meta["expression"] for it in all_items(get_task("arithmetic", "train", size=3000))}
    for item in all_items(train) + all_items(test):
        assert len(item.meta["operands"]) in (3, 4) and not item.meta["word"]
        assert independent_value(item.meta["expression"]) == int(item.answer)
        assert train.evaluate(item, reference_completion(item))
    held = [it.meta["expression"] for it in all_items(test)]
    assert not set(held) & short_train
    assert not set(held) & {it.meta["expression"] for it in all_items(train)}
    assert {len(it.meta["operands"]) for it in all_items(test)} == {3, 4}


def test_arithmetic_splits_are_disjoint_and_deterministic():
    train, test = (
        get_task("arithmetic", "train", size=2000),
        get_task("arithmetic", "test", size=300),
    )
    train_items, test_items = all_items(train), all_items(test)
    assert train_items == all_items(get_task("arithmetic", "train", size=2000))
    assert test_items != all_items(get_task("arithmetic", "test", size=300, seed=1))
    exprs = lambda items: {i.meta["expression"] for i in items}
    questions = lambda items: {i.messages[0]["content"] for i in items}
    assert len(exprs(train_items)) == 2000 and len(exprs(test_items)) == 300
    assert not exprs(train_items) & exprs(test_items)
    assert not questions(train_items) & questions(test_items)
    # Another seed draws other problems, but a test expression is never in any seed's train set.
    assert not exprs(all_items(get_task("arithmetic", "train", size=2000, seed=7))) & exprs(
        test_items
    )


def test_calculator_tool_agrees_with_reference():
    registry = pytest.importorskip("gptlab.tools.registry")
    tools = registry.ToolRegistry()
    for item in all_items(get_task("arithmetic", "test", size=50)):
        result = tools.run(item.messages[-1]["content"][1]["text"])
        assert result.ok and result.text == item.answer


def test_identity_answers_score_and_test_phrasings_are_new():
    train, test = get_task("identity", "train"), get_task("identity", "test")
    assert len(train) > 40 and len(test) > 10
    assert all_items(train) == all_items(get_task("identity", "train"))
    q = lambda task: {i.messages[-2]["content"] for i in all_items(task)}
    assert not q(train) & q(test)
    for task in (train, test):
        for item in all_items(task):
            assert task.evaluate(item, reference_completion(item)), item.meta
            assert not task.evaluate(item, "I am a cat.")
    assert {i.meta["topic"] for i in all_items(test)} == {t.key for t in identity.TOPICS}
    assert any(len(i.messages) == 4 for i in all_items(train))  # some open with a greeting


def test_chitchat_turns_become_alternating_messages(chats):
    chat = Chat("x", None, None, [Turn("B", "who opened?"), Turn("A", "hi"), Turn("A", "you there"),
                                  Turn("B", "yes"), Turn("A", "good"), Turn("B", "bye"), Turn("A", "ok")])  # fmt: skip
    assert chitchat.chat_messages(chat) == [
        {"role": "user", "content": "hi\nyou there"},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "good"},
        {"role": "assistant", "content": "bye"},
    ]
    assert chitchat.chat_messages(chat, max_turns=3) == chitchat.chat_messages(chat)[:2]
    train = get_task("chitchat", "train", chats=chats, test_frac=TEST_FRAC)
    test = get_task("chitchat", "test", chats=chats, test_frac=TEST_FRAC)
    ids = lambda task: {i.meta["id"] for i in all_items(task)}
    assert ids(train) and ids(test) and not ids(train) & ids(test)
    answered = {c.id for c in chats if len(c.turns) >= 2}  # one-turn chats have no assistant
    assert ids(train) | ids(test) == answered
    for item in all_items(train):
        roles = [m["role"] for m in item.messages]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) <= 8
    assert not train.scorable
    with pytest.raises(NotImplementedError, match="SFT only"):
        train.evaluate(train.example(0), "hello")


def test_gym_task_scores_with_reasoning_gym():
    pytest.importorskip("reasoning_gym")
    train, test = get_task("gym", "train", size=40), get_task("gym", "test", size=20)
    assert len(train) == 120 and len(test) == 60
    qs = lambda task: {i.messages[0]["content"] for i in all_items(task)}
    assert not qs(train) & qs(test)
    for item in all_items(test):
        assert test.evaluate(item, reference_completion(item))
        assert test.evaluate(item, f"Let me think.\nThe answer is {item.answer}")
        assert not test.evaluate(item, "12345678")


def test_sft_mixture_sizes_shuffle_and_determinism(plays, chats):
    sizes = {"play_speaker": 30, "play_title": 20, "continue_speech": 10, "arithmetic": 25,
             "identity": 100, "chitchat": 15}  # fmt: skip
    convs = mixture.sft_mixture("train", sizes, seed=3, plays=plays, chats=chats)
    assert len(convs) == sum(sizes.values())
    assert convs == mixture.sft_mixture("train", sizes, seed=3, plays=plays, chats=chats)
    assert convs != mixture.sft_mixture("train", sizes, seed=4, plays=plays, chats=chats)
    for conv in convs:
        assert conv[0]["role"] == "user" and conv[-1]["role"] == "assistant"
    tool_convs = [c for c in convs if isinstance(c[-1]["content"], list)]
    assert len(tool_convs) == 25
    first_half = convs[: len(convs) // 2]  # shuffled: the tasks are mixed, not in blocks
    assert 0 < sum(isinstance(c[-1]["content"], list) for c in first_half) < 25
    # On the test split a size above the task's length is capped, not repeated.
    test = mixture.sft_mixture("test", {"identity": 1000}, seed=0)
    assert len(test) == len(get_task("identity", "test"))


@pytest.mark.parametrize("module", [tasks, base, play_tasks, arithmetic, chitchat, mixture])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0

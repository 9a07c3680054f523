"""Self-instruct and Evol-Instruct: ROUGE-L on known strings and against a plain LCS table, each filter
rejecting planted bad generations for its stated reason, the loops' bookkeeping and lineage with a
scripted chat, seed files checked line by line, and `gptlab data self-instruct --evolve` end to end
on a tiny GPT through the inference engine, its output read back by `gptlab sft`'s reader."""

from __future__ import annotations

import doctest
import itertools
import json
import random

import pytest
import torch

from gptlab import cli
from gptlab.data import self_instruct as si
from gptlab.data import self_instruct_evolve as ev
from gptlab.data import self_instruct_filters as f
from gptlab.data.sft_batches import load_conversation_files
from gptlab.errors import InputError
from gptlab.model.config import ModelConfig
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples


@pytest.mark.parametrize("module", [si, ev, f])
def test_docstring_examples_hold(module):
    assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_on_known_strings():
    assert f.rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert f.rouge_l("The CAT sat, on the mat!", "the cat sat on the mat") == 1.0  # case and punctuation
    assert f.rouge_l("red green blue", "one two three") == 0.0
    assert f.rouge_l("", "anything") == 0.0
    # LCS "the cat on the mat" = 5 of 6 and 6 words: F1 = 10/12
    assert f.rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(10 / 12)
    # LCS 2 ("a b"), lengths 2 and 4: P = 1, R = 0.5, F1 = 2/3, symmetric
    assert f.rouge_l("a b", "a x b y") == pytest.approx(2 / 3) == f.rouge_l("a x b y", "a b")
    assert f.lcs_length(list("abcbdab"), list("bdcaba")) == 4  # CLRS's example (BCBA)


def _lcs_table(a: list[str], b: list[str]) -> int:
    """The textbook O(mn) dynamic programme, the reference for the bit-parallel version."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def test_bit_parallel_lcs_equals_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]  # > 64 words: several machine words
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        assert f.lcs_length(a, b) == _lcs_table(a, b)


def test_pool_finds_the_closest_instruction():
    pool = f.RougePool()
    pool.add("Give three tips for sleeping better.", "s1")
    pool.add("Convert 5 kilometres to miles.", "s2")
    score, key = pool.most_similar("Give three tips for sleeping well.")
    assert key == "s1" and score == pytest.approx(2 * 5 / 12)
    assert pool.most_similar("Name a bird that cannot fly.") == (0.0, None)


# ---------------------------------------------------------------------------- filters


def _seed_pool() -> f.RougePool:
    pool = f.RougePool()
    for r in si.read_seeds(si.DEFAULT_SEEDS):
        pool.add(r.instruction, r.id)
    return pool


def test_planted_near_duplicates_are_rejected_and_new_tasks_kept():
    pool = _seed_pool()
    ok = si.Reply("Name a bird that cannot fly.", True)
    assert si.check_instruction(ok, pool, 0.7) == ("Name a bird that cannot fly.", None)
    # the same task again in the same batch (it joined the pool), and near copies of seeds
    for text in ("Name a bird that cannot fly!", "Give three tips for sleeping better at night.",
                 "1. Convert 5 kilometres to miles please."):
        assert si.check_instruction(si.Reply(text, True), pool, 0.7)[1] == "near_duplicate", text
    # a looser threshold lets the seed paraphrase through
    assert si.check_instruction(si.Reply("Give three tips for sleeping better at night.", True), pool, 0.9)[1] is None


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("Birds?", "too_short"),
    ("Write " + "a very long task " * 40, "too_long"),
    ("Переведите этот текст на английский язык, пожалуйста.", "non_ascii"),
    ("Write a story about \ufffd\ufffd\ufffd.", "non_ascii"),
    ("... and then write a poem about rain.", "punctuation_start"),
    ("Describe the image below in detail.", "banned_word"),
    ("Listen to the audio and transcribe it.", "banned_word"),
    ("Write another, different task about cooking.", "copies_prompt"),
    ("#Rewritten Prompt#: Name two birds that cannot fly.", "copies_prompt"),
    ("A reward for a customer's failings.", "not_a_task"),
    ("The old lighthouse in the sea of canvas.", "not_a_task"),
    ("Summarize the plot of Hamlet in two sentences.", None),  # "plot" of a story is text
    ("Is a tomato a fruit or a vegetable?", None),
])
def test_instruction_filter_names_the_reason(text, reason):
    assert f.instruction_problem(text) == reason


LONG_ANSWER = (
    "The emperor penguin is the best known bird that cannot fly. I'm sorry to say that its small, stiff wings "
    "cannot lift its heavy body, which can weigh more than thirty kilograms. Instead they work like flippers: "
    "under water a penguin beats them to swim at several metres per second and dives deeper than five hundred "
    "metres while hunting fish, krill and squid. Other flightless birds include the ostrich of Africa, the emu "
    "of Australia, the cassowary of New Guinea and the little kiwi of New Zealand, which lays an egg that is "
    "enormous for its size."
)


@pytest.mark.parametrize("answer, finished, reason", [
    ("   ", True, "answer_empty"),
    ("...!", True, "answer_empty"),
    ("Penguins, ostriches and", False, "answer_truncated"),
    ("I'm sorry, but I cannot help with that.", True, "answer_refuses"),
    ("As an AI, I don't have access to birds.", True, "answer_refuses"),
    ("Name a bird that cannot fly.", True, "answer_copies_instruction"),
    ("Name a bird that cannot fly. The penguin.", True, "answer_copies_instruction"),
    ("The penguin.\nThe penguin.\nThe penguin.", True, "answer_repetitive"),
    ("the bird is a bird " * 12, True, "answer_repetitive"),
    ("Пингвин и страус не умеют летать.", True, "answer_non_ascii"),
    (LONG_ANSWER, True, None),  # a long answer that says "cannot" and "sorry" stays
    ("The penguin (and the ostrich, the emu and the kiwi).", True, None),
])
def test_answer_filter_names_the_reason(answer, finished, reason):
    assert f.answer_problem(answer, "Name a bird that cannot fly.", finished) == reason


@pytest.mark.parametrize("new, in_depth, reason", [
    ("Name a bird that cannot fly.", True, "no_change"),
    ("name a BIRD that cannot fly!", True, "no_change"),
    ("Name a bird that cannot fly, please.", True, "no_change"),  # ROUGE-L 0.92
    ("Name a bird.", True, "shrank"),
    ("Name a bird.", False, None),  # in breadth may be shorter
    ("Name a bird that cannot fly and explain why its wings do not lift it.", True, None),
])
def test_evolution_filter_names_the_reason(new, in_depth, reason):
    assert f.evolution_problem(new, "Name a bird that cannot fly.", in_depth) == reason


def test_embedded_seeds_pass_every_filter_and_are_not_near_duplicates():
    seeds = si.read_seeds(si.DEFAULT_SEEDS)
    assert 20 <= len(seeds) <= 30
    pool = f.RougePool()
    for r in seeds:
        assert f.instruction_problem(r.instruction) is None, r.instruction
        assert r.answer and f.answer_problem(r.answer, r.instruction, True) is None, r.instruction
        assert pool.most_similar(r.instruction)[0] < 0.7, r.instruction
        pool.add(r.instruction, r.id)


# ---------------------------------------------------------------------------- seed files


def test_seed_files_are_read_in_any_conversation_format(tmp_path):
    p = tmp_path / "seeds.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Add 2 and 3.", "output": "5"},
        {"messages": [{"role": "user", "content": "Name a colour."}]},  # no answer: fine for a seed
        {"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]},
    ]) + "\n")
    seeds = si.read_seeds(p)
    assert [(r.id, r.instruction, r.answer) for r in seeds] == [
        ("seed-001", "Add 2 and 3.", "5"), ("seed-002", "Name a colour.", None), ("seed-003", "Say hi.", "Hi!")]


@pytest.mark.parametrize("lines, line, message", [
    (['{"instruction": "Add 2 and 3.", "output": "5"}', '{"instruction": "Name a colour."', ""], 2, "not valid JSON"),
    (['{"instruction": "Add 2 and 3.", "output": "5"}', "", '{"prompt": "x"}'], 3, "not a seed task"),
    (['{"instruction": "Add 2 and 3.", "output": "5"}', '{"instruction": " ", "output": "5"}'], 2, "needs a user turn"),
    (['{"messages": [{"role": "assistant", "content": "hello"}]}'], 1, "must be user"),
])
def test_a_malformed_seed_file_names_the_line(tmp_path, lines, line, message):
    p = tmp_path / "seeds.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as e:
        si.read_seeds(p)
    assert e.value.line == line and message in str(e.value) and str(p) in str(e.value)


def test_missing_and_empty_seed_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        si.read_seeds(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="empty"):
        si.read_seeds(tmp_path / "empty.jsonl")


# ---------------------------------------------------------------------------- the loops, scripted


class Script:
    """A ChatFn that answers from a queue per kind of request, and records what it was asked."""

    def __init__(self, instructions: list[str], answers: list[str], rewrites: list[str] = ()):
        self.queues = {"instruction": list(instructions), "answer": list(answers), "rewrite": list(rewrites)}
        self.calls: list[tuple[str, int]] = []

    def __call__(self, prompts, max_new_tokens, temperature, seed, desc=""):
        out = []
        for p in prompts:
            text = p[-1]["content"]
            kind = "instruction" if text in (si.FIRST_ASK, si.NEXT_ASK) else "rewrite" if "#Given Prompt#" in text else "answer"
            self.calls.append((kind, len(p)))
            reply = self.queues[kind].pop(0)
            out.append(si.Reply(reply.removesuffix("<cut>"), finished=not reply.endswith("<cut>")))
        return out


def test_self_instruct_keeps_good_records_and_counts_each_rejection():
    seeds = si.read_seeds(si.DEFAULT_SEEDS)
    script = Script(
        instructions=["Name a bird that cannot fly.", "Give three tips for sleeping better.", "Describe this photo.",
                      "Tell me a joke about a cat that never", "List four uses of a paper clip.",
                      "Explain how a rainbow forms.", "What is the capital of Peru?"],
        answers=["The penguin.", "I'm sorry, I cannot do that.", "It is made of light.<cut>", "Lima."],
    )
    s = si.SelfInstructSettings(n=2, examples=4, max_tries=7)
    report = si.Report()
    script.queues["instruction"][3] += "<cut>"
    kept = si.self_instruct(script, seeds, s, report, batch_size=4, progress=False)
    assert [(r.id, r.instruction, r.answer) for r in kept] == [
        ("si-00001", "Name a bird that cannot fly.", "The penguin."), ("si-00002", "What is the capital of Peru?", "Lima.")]
    st = report.stages["self-instruct"]
    assert st["generated"] == 7 and st["kept"] == 2
    assert dict(st["rejected"]) == {"near_duplicate": 1, "banned_word": 1, "too_long": 1, "answer_refuses": 1,
                                    "answer_truncated": 1}
    assert st["generated"] == st["kept"] + sum(st["rejected"].values())
    # each prompt showed 4 examples (8 chat turns + the request); the second batch also shows kept ones
    assert {n for kind, n in script.calls if kind == "instruction"} == {9}
    assert all(len(r.examples) == 4 for r in kept) and all(e.startswith("seed-") for e in kept[0].examples)
    assert "rejected:" in report.table() and "answer_refuses" in report.table()


def test_evolve_records_lineage_and_retries_failed_parents():
    start = [si.Record("si-00001", "Name a bird that cannot fly.", "The penguin.", operation="self-instruct"),
             si.Record("si-00002", "Explain how a rainbow forms.", "Light bends.", operation="self-instruct")]
    script = Script(
        instructions=[],
        rewrites=["Name a bird that cannot fly and say where it lives in the wild.",  # ok
                  "Explain how a rainbow forms.",  # no change: the parent is evolved again in round 2
                  "Name a bird that cannot fly, say where it lives, and what it eats in winter.",
                  "#Rewritten Prompt#: Explain how rainbows form."],
        answers=["The penguin lives in Antarctica.", "The penguin; it eats fish, even in winter."],
    )
    s = si.SelfInstructSettings(evolve=2, seed=3)
    report = si.Report()
    out = ev.evolve(script, start, s, f.RougePool(), report, progress=False)
    assert [(r.id, r.parent, r.round) for r in out] == [("ev1-00001", "si-00001", 1), ("ev2-00001", "ev1-00001", 2)]
    assert all(r.operation in ev.OPERATIONS for r in out)
    assert report.stages["evolve round 1"]["rejected"]["no_change"] == 1
    assert report.stages["evolve round 2"]["rejected"]["copies_prompt"] == 1
    rec = out[1].to_json()
    assert rec["parent"] == "ev1-00001" and rec["round"] == 2 and rec["messages"][0]["role"] == "user"


def test_every_operation_has_a_prompt_that_names_the_instruction():
    for op, (in_depth, _) in ev.OPERATIONS.items():
        msgs = ev.evolve_prompt("Name a bird.", op)
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        assert "Name a bird." in msgs[-1]["content"] and ("Rewritten" in msgs[-1]["content"]) == in_depth
        assert f.instruction_problem(msgs[1]["content"]) is None  # the worked example passes the filters
        assert f.evolution_problem(msgs[1]["content"], ev.DEMOS[op][0], in_depth) is None


# ---------------------------------------------------------------------------- end to end


VERBS = ["Name", "List", "Describe", "Compare", "Suggest", "Explain"]
NUMS, KINDS = ["three", "two", "four", "five"], ["kinds", "types", "sorts"]
THINGS = ["fish", "birds", "trees", "rivers", "cars", "games", "songs", "tools"]


@pytest.fixture(scope="module")
def grammar_run(tmp_path_factory):
    """A run folder with a tiny GPT wired as a bigram machine: attention and MLP outputs are zero,
    so the next token depends on the current one only, and the head maps <|assistant|> to a verb,
    a verb to a number, ... a noun to "." and "." to <|end|>: every reply is one sentence like
    "Describe four kinds of birds." (576 of them), written through the real engine and sampler."""
    sents = [f"{v} {n} {k} of {t}." for v, n, k, t in itertools.product(VERBS, NUMS, KINDS, THINGS)]
    tok = Tokenizer.train(["\n".join(sents)] * 5 + [builtin_samples()["english"]], 420)
    one = {w: tok.encode(w) for w in VERBS + [" " + x for x in NUMS + KINDS + THINGS + ["of"]] + ["."]}
    assert all(len(ids) == 1 for ids in one.values()), "each grammar word must be one token"
    ids = {w: v[0] for w, v in one.items()}
    steps = [[tok.token_id("<|assistant|>")], [ids[v] for v in VERBS], [ids[" " + x] for x in NUMS],
             [ids[" " + x] for x in KINDS], [ids[" of"]], [ids[" " + x] for x in THINGS], [ids["."]],
             [tok.end_of_turn_id]]
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=64, n_head=2, n_kv_head=2,
                      intermediate_size=64, max_seq_len=1024, tie_embeddings=False)
    model = GPT(cfg)
    with torch.no_grad():
        for block in model.layers:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
        emb = model.embed_tokens.weight
        model.lm_head.weight.zero_()
        for src, dst in itertools.pairwise(steps):
            for s, d in itertools.product(src, dst):  # logit 3 * sqrt(64) = 24 for a successor
                model.lm_head.weight[d] += 3 * emb[s] / emb[s].norm()
    root = tmp_path_factory.mktemp("si_run")
    save_model(root / "sft", model)
    tok.save(root / "tokenizer")
    return root


def test_self_instruct_command_end_to_end_with_evolve(grammar_run, tmp_path, capsys, one_thread):
    out = tmp_path / "si.jsonl"
    argv = ["data", "self-instruct", "--from", str(grammar_run / "sft"), "--n", "12", "--evolve", "2",
            "--examples", "3", "--max-instruction-tokens", "12", "--max-answer-tokens", "12",
            "--batch-size", "8", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    convs = load_conversation_files([out])  # what `gptlab sft --data` reads, strictly
    assert len(convs) == len(recs) and all([m["role"] for m in c] == ["user", "assistant"] for c in convs)
    first = [r for r in recs if r["round"] == 0]
    evolved = [r for r in recs if r["round"] > 0]
    assert len(first) == 12 and all(r["operation"] == "self-instruct" and r["parent"] is None for r in first)
    assert evolved, "some evolutions survive"
    by_id = {r["id"]: r for r in recs}
    for r in evolved:  # each parent is an earlier record, one round back
        assert r["operation"] in ev.OPERATIONS and by_id[r["parent"]]["round"] == r["round"] - 1
    report = json.loads((tmp_path / "si.report.json").read_text())
    for name, st in report["stages"].items():
        assert st["generated"] == st["kept"] + sum(st["rejected"].values()), name
    assert report["written"] == len(recs) and "evolve round 2" in report["stages"]
    assert "generated" in printed and f"-> {out}" in printed
    # a second run with the same seed writes the same file
    again = tmp_path / "again.jsonl"
    assert cli.main([*argv[:-1], str(again)]) == 0
    assert again.read_text() == out.read_text()


def test_bad_options_and_seed_files_are_one_line_errors(grammar_run, tmp_path, capsys):
    base = ["data", "self-instruct", "--from", str(grammar_run / "sft"), "--out", str(tmp_path / "o.jsonl")]
    assert cli.main([*base, "--n", "0"]) == 2
    assert "--n must be >= 1" in capsys.readouterr().err
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"instruction": "Add 2 and 3.", "output": "5"}\n{"output": "no instruction"}\n')
    assert cli.main([*base, "--seeds", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err

"""Tree of thoughts: the beam search keeps the best-valued states (a fake tree whose best path a
greedy search misses), respects beam and depth, never expands finished states, counts every
generated token; the engine's side stops thoughts at line breaks and its token count matches what
the engine generated; the self value reads right-padded rows right; `gptlab eval --mode tot` runs
end to end on a tiny model."""

from __future__ import annotations

import doctest
import json

import pytest
import torch
from conftest import lively_gpt

from gptlab.eval import cli as eval_cli
from gptlab.eval import tree_of_thoughts as tt
from gptlab.eval.tree_of_thoughts import Node, ToTConfig, beam_search, equation_value
from gptlab.infer.loading import make_engine
from gptlab.model.gpt import GPT
from gptlab.model.io import save_model
from gptlab.tasks import get_task
from gptlab.tokenizer.bpe import Tokenizer
from gptlab.tokenizer.evaluate import builtin_samples

TOKENS_PER_THOUGHT = 2


def fake_tree(values: dict[tuple[int, ...], float], done: set[tuple[int, ...]] = frozenset(), calls: list | None = None):
    """expand/value over a tree of digit paths: child j of path p is p + (j,), written as
    TOKENS_PER_THOUGHT ids; a path's value is `values.get(path, 0)`; paths in `done` are finished."""

    def path(n: Node) -> tuple[int, ...]:
        return tuple(n.ids[::TOKENS_PER_THOUGHT])

    def expand(live, branch):
        if calls is not None:
            calls.append([path(n) for _, n in live])
        assert not any(n.done for _, n in live), "a finished state was expanded"
        out = []
        for _, n in live:
            kids = []
            for j in range(branch):
                p = (*path(n), j)
                kids.append(Node(n.ids + [j] * TOKENS_PER_THOUGHT, [*n.steps, str(j)], done=p in done))
            out.append(kids)
        return out

    def value(states):
        return [values.get(path(n), 0.0) for _, n in states]

    return expand, value, path


# The best leaf (1, 2, 0) hides under a mediocre first step: greedy (beam 1) follows 0.
VALUES = {(0,): 0.6, (1,): 0.5, (2,): 0.1, (0, 0): 0.4, (0, 1): 0.3, (1, 2): 0.8, (1, 0): 0.2,
          (0, 0, 0): 0.45, (1, 2, 0): 1.0, (1, 2, 1): 0.7}


def test_docstrings_hold():
    assert doctest.testmod(tt).failed == 0


def test_beam_keeps_the_best_valued_states_and_finds_the_path_greedy_misses():
    expand, value, path = fake_tree(VALUES)
    wide = beam_search(2, expand, value, beam=2, depth=3, branch=3)  # two items, searched in lockstep
    for s in wide:
        assert path(s.best) == (1, 2, 0) and s.best.value == 1.0 and s.best.steps == ["1", "2", "0"]
        assert len(s.levels) == 3 and all(len(level) == 2 for level in s.levels)  # depth levels, beam states each
        assert [path(n) for n in s.levels[0]] == [(0,), (1,)]  # the two best first steps
        assert [path(n) for n in s.levels[1]] == [(1, 2), (0, 0)]
        # level 1: 3 children of the root; levels 2 and 3: 3 children of each of 2 states
        assert s.gen_tokens == (3 + 6 + 6) * TOKENS_PER_THOUGHT
    greedy = beam_search(1, expand, value, beam=1, depth=3, branch=3)[0]
    assert path(greedy.best) == (0, 0, 0) and all(len(level) == 1 for level in greedy.levels)
    assert greedy.gen_tokens == 3 * 3 * TOKENS_PER_THOUGHT
    shallow = beam_search(1, expand, value, beam=2, depth=2, branch=3)[0]
    assert len(shallow.levels) == 2 and path(shallow.best) == (1, 2)
    with pytest.raises(ValueError, match="beam, depth and branch"):
        beam_search(1, expand, value, beam=0, depth=2, branch=3)


def test_finished_states_stay_in_the_beam_but_are_not_expanded():
    calls: list = []
    expand, value, path = fake_tree({(0,): 0.9, (1,): 0.5, (1, 0): 0.6, (1, 1): 0.4}, done={(0,)}, calls=calls)
    s = beam_search(1, expand, value, beam=2, depth=3, branch=2)[0]
    assert calls[0] == [()] and calls[1] == [(1,)]  # (0,) finished at level 1: only (1,) grows
    assert path(s.best) == (0,) and s.best.done  # and still wins at the end
    assert path(s.levels[-1][0]) == (0,)


def test_equal_states_are_valued_once_but_their_tokens_count():
    seen: list[int] = []

    def expand(live, branch):
        return [[Node(n.ids + [7, 7]) for _ in range(branch)] for _, n in live]  # every sample the same

    def value(states):
        seen.append(len(states))
        return [1.0] * len(states)

    s = beam_search(1, expand, value, beam=3, depth=2, branch=4)[0]
    assert seen == [1, 1] and all(len(level) == 1 for level in s.levels)
    assert s.gen_tokens == 2 * 4 * 2 and s.best.ids == [7, 7, 7, 7]


def test_equations_are_checked_and_must_use_known_numbers():
    q = "Ada has 48 coins and buys 3 bags of 12 coins. How many coins?"
    assert equation_value(q, "3 * 12 = 36\n48 + 36 = 84") == 1.0
    assert equation_value(q, "3 x 12 = 36, then 48 + 36 = 85") == 0.5  # one wrong sum
    assert equation_value(q, "4 * 12 = 48") == 0.0  # right arithmetic, mis-copied operand
    assert equation_value(q, "1,000 + 2 = 1,002") == 0.0  # right, but neither number is known
    assert equation_value(q, "First, multiply.") == 0.5


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train([builtin_samples()["english"]] * 2, 300)


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    return lively_gpt(tok.vocab_size, max_seq_len=512)


def test_right_padded_rows_read_the_same_as_single_rows(model):
    rows = [[5, 9, 17, 40, 3], [8, 2], [100, 101, 102]]
    got = tt.next_token_logprobs(model, rows, batch=3)
    for r, ids in enumerate(rows):
        with torch.no_grad():
            want = torch.log_softmax(model.lm_head(model.hidden_states(torch.tensor([ids]))[0, -1]).float(), -1)
        torch.testing.assert_close(got[r], want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("value", ["verifier", "self"])
def test_engine_search_counts_every_generated_token(tok, model, value, one_thread, monkeypatch):
    engine = make_engine(model, tok, max_batch=16)
    made: list[int] = []
    real = engine.generate_all

    def counting(prompts, max_new_tokens, **kw):
        outs = real(prompts, max_new_tokens, **kw)
        made.extend(len(o) for o in outs)
        return outs

    monkeypatch.setattr(engine, "generate_all", counting)
    task = get_task("arithmetic", "test", size=3)
    items = [task.example(i) for i in range(3)]
    cfg = ToTConfig(beam=2, depth=2, branch=2, step_tokens=6, value=value)
    res, rec = tt.tot_scores(engine, tok, task, items, cfg, max_new_tokens=20, seed=1)
    assert sum(r.gen_tokens for r in res) == sum(made)  # pruned branches and the final completion too
    assert all(r.gen_tokens >= r.n_tokens and r.n_tokens <= 20 for r in res)
    assert rec["value"] == value and rec["beam"] == 2 and rec["depth"] == 2
    assert (rec["value_tokens"] > 0) == (value == "self")
    # a thought stops at a line break, the end of the turn, or after step_tokens
    breaks = tt.newline_ids(tok) | engine.eos_ids
    expand = tt.engine_expand(engine, tok, [tok.render_prompt(task.prompt(it)) for it in items], cfg, 20, seed=1)
    for kids in expand([(0, Node()), (1, Node())], 3):
        for k in kids:
            assert len(k.ids) == 6 or k.ids[-1] in breaks
    assert "\n" in tok.decode(sorted(tt.newline_ids(tok))[:1])


def test_self_values_are_probabilities(tok, model, one_thread):
    engine = make_engine(model, tok, max_batch=8)
    prompts = [[{"role": "user", "content": "What is 2 + 3?"}]]
    vals, read = tt.self_values(engine, tok, prompts, [(0, "2 + 3 = 5"), (0, "2 + 3 = 6")])
    assert len(vals) == 2 and all(0.0 < v < 1.0 for v in vals) and vals[0] != vals[1] and read > 10


def test_eval_mode_tot_end_to_end(tmp_path, tok, model, one_thread):
    save_model(tmp_path / "run" / "sft", model)
    tok.save(tmp_path / "run" / "tokenizer")
    out = tmp_path / "eval.json"
    argv = ["--from", str(tmp_path / "run" / "sft"), "--tasks", "arithmetic:3", "--max-new-tokens", "12",
            "--device", "cpu", "--out", str(out)]
    assert eval_cli.main([*argv, "--mode", "tot", "--tot-beam", "2", "--tot-depth", "2", "--tot-branch", "2",
                          "--tot-step-tokens", "4"]) == 0
    assert eval_cli.main([*argv, "--mode", "sc", "--n-samples", "2"]) == 0
    res = json.loads(out.read_text())["results"]
    tot, sc = res["arithmetic/tot"], res["arithmetic/sc"]
    assert tot["n"] == 3 and tot["value"] == "verifier" and tot["beam"] == 2 and tot["branch"] == 2
    assert tot["gen_tokens"] >= tot["reply_tokens"] and len(tot["per_item"]["correct"]) == 3
    assert sc["gen_tokens"] >= sc["reply_tokens"]  # sc counts both samples
    assert tot["per_item"]["id"] == sc["per_item"]["id"]  # the same items, so modes pair
    with pytest.raises(Exception, match="--tot-beam must be"):
        eval_cli.main([*argv, "--mode", "tot", "--tot-beam", "0"])

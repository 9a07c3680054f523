"""RL's held-out evaluation compares the same prompts before and after: per-prompt scores on disk,
paired gains, and a length-matched reward that a policy cannot raise by saying less."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from gptlab.algos.rollout import PromptItem
from gptlab.eval.heldout import make_heldout_eval
from gptlab.eval.heldout_stats import paired_summary

END = 0


class ScriptedEngine:
    """Stands in for the KV-cache engine: each call returns the next scripted batch of replies."""

    eos_ids: ClassVar[set[int]] = {END}

    def __init__(self, batches: list[list[list[int]]]):
        self.batches = list(batches)

    def generate_all(self, prompts, max_new_tokens, **kw):
        replies = self.batches.pop(0)
        assert len(replies) == len(prompts)
        return replies


def _words_reward(prompts, replies):
    """A reward model that reads 'machine-made' tokens (id 9) as bad, one point each: longer = worse."""
    return [float(5 * r.count(7) - r.count(9)) for r in replies]


def test_shorter_replies_raise_the_reward_but_not_the_length_matched_reward(tmp_path):
    held = [PromptItem([{"role": "user", "content": f"q{i}"}], [1, 2, i]) for i in range(40)]
    before = [[9] * 20 + [END] for _ in held]  # the SFT model rambles
    after = [[9] * 5 + [END] for _ in held]  # the policy learned to stop early: same tokens, fewer
    path = tmp_path / "heldout_items.jsonl"
    evaluate = make_heldout_eval(ScriptedEngine([before, after]), tok=None, held=held, max_new=32,
                                 reward_fn=_words_reward, items_path=path)
    assert evaluate(None)["heldout_reward"] == -20
    assert evaluate(None)["heldout_reward"] == -5
    paired = paired_summary(path)
    assert paired["reward"]["gain"] == 15 and paired["reward"]["ci95"][0] > 0  # brevity pays
    assert paired["length_matched_reward"]["gain"] == 0  # cut to 5 tokens each, nothing is better
    assert paired["len"]["gain"] == -15
    assert json.loads(path.read_text().splitlines()[0])["replies"][0] == before[0]


def test_a_better_reply_shows_in_the_length_matched_reward_and_a_resume_keeps_the_first_replies(tmp_path):
    held = [PromptItem([{"role": "user", "content": f"q{i}"}], [1, 2, i]) for i in range(30)]
    before = [[9] * 10 + [END] for _ in held]
    middle = [[9] * 8 + [END] for _ in held]
    after = [[7, 9, 9] + [END] for _ in held]
    path = tmp_path / "heldout_items.jsonl"
    make_heldout_eval(ScriptedEngine([before]), None, held, 32, _words_reward, path)(None)
    # a resumed run: a new hook reads the first evaluation's replies from disk
    evaluate = make_heldout_eval(ScriptedEngine([middle, after]), None, held, 32, _words_reward, path)
    evaluate(None), evaluate(None)
    paired = paired_summary(path)
    assert paired["length_matched_reward"]["gain"] == pytest.approx(6)  # [7, 9, 9] vs [9, 9, 9]: 3 vs -3
    assert paired["length_matched_reward"]["ci95"][0] > 0


def test_sampled_replies_are_scored_per_prompt_and_the_greedy_ones_are_kept(tmp_path):
    held = [PromptItem([{"role": "user", "content": f"q{i}"}], [1, 2, i]) for i in range(4)]
    greedy = [[9, END] for _ in held]
    sampled = [[7, END], [9, END]] * 4  # two samples per prompt: one good, one bad
    path = tmp_path / "heldout_items.jsonl"
    evaluate = make_heldout_eval(ScriptedEngine([greedy, sampled]), None, held, 32, _words_reward, path, samples=2)
    got = evaluate(None)
    assert got["heldout_reward"] == -1 and got["heldout_sampled_reward"] == pytest.approx(2.0)  # (5 - 1) / 2
    line = json.loads(path.read_text())
    assert line["replies"] == greedy and line["sampled_reward"] == [2.0] * 4

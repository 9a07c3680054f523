"""Judging: both orders cancel position bias, rule / reward-model / judge-model verdicts, reward-model
accuracy with classifier metrics, and `gptlab eval judge` writing votes that `gptlab arena` ranks."""

from __future__ import annotations

import json

import pytest
import torch
from test_eval_cli import make_run

from gptlab.eval import arena_cli, judge, judge_cli
from gptlab.eval.judge import RewardScorer, both_orders, judge_all, rm_accuracy, task_pairs
from gptlab.infer.loading import load_for_inference
from gptlab.model.heads import ScalarHeadModel
from gptlab.model.io import save_model
from gptlab.tasks import get_task

Q = [{"role": "user", "content": "What is 2 + 3?"}]


def test_both_orders_cancel_position_bias():
    always_first = lambda p, a, b: "first"
    assert both_orders(always_first, Q, "5", "7") == ("tie", ["a", "b"])
    longer = lambda p, a, b: "first" if len(a) > len(b) else "second" if len(b) > len(a) else "tie"
    assert both_orders(longer, Q, "five", "5") == ("a", ["a", "a"])
    assert both_orders(longer, Q, "5", "five")[0] == "b"
    assert both_orders(longer, Q, "5", "7") == ("tie", ["tie", "tie"])
    votes, summary = judge_all(always_first, [Q, Q], ["5", "5"], ["7", "7"], "m1", "m2", "model")
    assert [v["winner"] for v in votes] == ["tie", "tie"] and summary.consistent == 0.0


def test_rule_judge_uses_the_task_checker_not_partial_credit():
    task = get_task("arithmetic", "test", size=5)
    item = task.example(0)
    prefer = judge.rule_judge(task, lambda p: item)
    right, wrong = f"The answer is {item.answer}.", "The answer is -1."
    assert both_orders(prefer, task.prompt(item), right, wrong)[0] == "a"
    assert both_orders(prefer, task.prompt(item), wrong, right)[0] == "b"
    graded = type("Graded", (type(task),), {"reward": lambda self, it, text: len(text) / 100})(task.split)
    near = "The answer is -10000."  # more partial credit (longer), still wrong
    assert graded.reward(item, near) > graded.reward(item, wrong) and not graded.evaluate(item, near)
    assert both_orders(judge.rule_judge(graded, lambda p: item), task.prompt(item), near, wrong)[0] == "tie"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    task = get_task("arithmetic", "test", size=20)
    convs = [task.example(i).messages for i in range(3)]
    root = make_run(tmp_path_factory.mktemp("runs") / "x", {"sft": convs})
    # A reward model whose head reads a direction of the final hidden state: real scores, not 0.
    trunk, _ = load_for_inference(root / "base", "cpu")
    rm = ScalarHeadModel(trunk)
    torch.manual_seed(3)
    rm.head.weight.data.normal_()
    save_model(root / "rm", trunk)
    rm.save_head(root / "rm")
    return root


def test_reward_scorer_and_rm_accuracy(run):
    scorer = RewardScorer.load(run / "rm", "cpu")
    convs = [[*Q, {"role": "assistant", "content": a}] for a in ("5", "seven", "The answer is 5.")]
    scores = scorer.score(convs)
    assert len(set(scores)) == 3  # distinct replies, distinct rewards
    assert scorer.score(convs[::-1]) == pytest.approx(scores[::-1], abs=1e-5)  # batching is order-free
    task = get_task("arithmetic", "test", size=6)
    pairs = task_pairs(task, [task.example(i) for i in range(6)])
    res = rm_accuracy(scorer, pairs)
    assert res["n"] == 6 and res["random_baseline"] == 0.5 and 0 <= res["acc"] <= 1
    assert res["classifier"]["accuracy"] == pytest.approx(res["acc"])  # both orders: same decision
    assert res["length_baseline"] == 1.0  # reference replies (with the tool call) are longer
    prefer = judge.rm_judge(scorer)
    winner, orders = both_orders(prefer, Q, "5", "seven")
    assert orders[0] == orders[1] and winner == ("a" if scores[0] > scores[1] else "b")


def test_model_judge_is_a_likelihood_comparison(run):
    model, tok = load_for_inference(run / "sft", "cpu")
    prefer = judge.model_judge(model, tok, "Be right.")
    v = prefer(Q, "5", "7")
    assert v in ("first", "second", "tie")


def test_model_judge_scores_all_pairs_in_batches_with_the_verdicts_of_one_pair_at_a_time(run, monkeypatch):
    model, tok = load_for_inference(run / "sft", "cpu")
    q2 = [{"role": "user", "content": "Compute 12 * 7, then say why in a long sentence."}]
    prompts, a, b = [Q, q2, Q], ["5", "84 because 12 sevens are 84", "The answer is 5."], ["7", "85", "no"]
    alone = judge.model_judge(model, tok, "Be right.")
    singles = [both_orders(alone, p, x, y) for p, x, y in zip(prompts, a, b)]
    batched = judge.model_judge(model, tok, "Be right.")
    calls = []
    real = judge.batched_logprobs
    monkeypatch.setattr(judge, "batched_logprobs", lambda *args, **kw: calls.append(len(args[1])) or real(*args, **kw))
    votes, _ = judge_all(batched, prompts, a, b, "x", "y", "model")
    assert calls == [6]  # one call for the 3 pairs in both orders, none after
    assert [(v["winner"], v["orders"]) for v in votes] == [(w, list(o)) for w, o in singles]


def test_judge_cli_writes_votes_arena_reads(run, capsys):
    out = run / "judge" / "votes.jsonl"
    argv = ["--a", str(run / "base"), "--b", str(run / "sft"), "--task", "arithmetic", "--limit", "3",
            "--max-new-tokens", "40", "--device", "cpu", "--out", str(out)]
    assert judge_cli.main([*argv, "--judge", "rule", "rm", "--rm", str(run / "rm")]) == 0  # one set of replies
    assert judge_cli.main([*argv, "--judge", "rm", "--rm", str(run / "rm"), "--append"]) == 0
    votes = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(votes) == 9 and [v["judge"] for v in votes[::3]] == ["rule", "rm", "rm"]
    assert [v["winner"] for v in votes[3:6]] == [v["winner"] for v in votes[6:]]  # the same replies, judged again
    assert all(v["model_a"] == "base" and v["model_b"] == "sft" for v in votes)
    # the memorising sft model answers its three training problems; the random base cannot
    assert [v["winner"] for v in votes[:3]] == ["b", "b", "b"]
    # B's eval.json keeps each judge's win rate with its interval, lengths and the matched-length verdicts
    results = json.loads((run / "sft" / "eval.json").read_text())["results"]
    rule = results["judge/arithmetic/rule"]
    assert rule["win_rate_b"] == 1.0 and rule["vs"] == "base" and rule["ci95"] == [1.0, 1.0]
    assert rule["reply_tokens_b"] > 0 and set(rule["matched_length"]) >= {"win_rate_b", "ci95"}
    assert "judge/arithmetic/rm" in results
    assert arena_cli.main([str(out), "--bootstrap", "0"]) == 0
    assert "sft" in capsys.readouterr().out


def test_judge_cli_judges_several_b_models_against_one_set_of_a_replies(run, tmp_path):
    import shutil

    twin = tmp_path / "sft2"
    shutil.copytree(run / "sft", twin)
    shutil.copytree(run / "tokenizer", tmp_path / "tokenizer")  # a stage's tokenizer sits beside it
    (twin / "eval.json").unlink(missing_ok=True)
    out = tmp_path / "votes.jsonl"
    assert judge_cli.main(["--a", str(run / "base"), "--b", str(run / "sft"), str(twin), "--task", "arithmetic",
                           "--limit", "3", "--max-new-tokens", "40", "--device", "cpu", "--out", str(out)]) == 0
    votes = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["model_b"] for v in votes] == ["sft"] * 3 + ["sft2"] * 3
    assert [v["winner"] for v in votes[:3]] == [v["winner"] for v in votes[3:]]  # same weights, same verdicts
    for folder in (run / "sft", twin):
        assert "judge/arithmetic/rule" in json.loads((folder / "eval.json").read_text())["results"]


def test_same_words_cuts_the_longer_reply_only():
    a, b = judge.same_words("The answer is 84, as the calculator said.", "It is 84.")
    assert (a, b) == ("The answer is", "It is 84.")
    assert judge.same_words("", "x y") == ("", "")


def test_judge_summary_interval_excludes_half_when_b_always_wins():
    prefer = lambda prompt, first, second: "first" if len(first) > len(second) else "second"
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
    _, summary = judge.judge_all(prefer, prompts, ["a"] * 20, ["bbb"] * 20, "sft", "dpo", "rule")
    d = summary.as_dict()
    assert d["win_rate_b"] == 1.0 and d["ci95"][0] == 1.0 and d["sign_test_p"] < 1e-4
    _, split = judge.judge_all(prefer, prompts, ["aaa", "a"] * 10, ["bb"] * 20, "sft", "dpo", "rule")
    d = split.as_dict()
    assert d["win_rate_b"] == 0.5 and d["ci95"][0] < 0.5 < d["ci95"][1]


def test_judge_cli_judges_open_prompts_from_a_file_with_the_reward_model_only(run, tmp_path):
    from gptlab.errors import InputError

    prompts = tmp_path / "chats.txt"
    prompts.write_text("Hello there!\nWhat is 2 + 3?\n\nTell me about the sea.\n")
    out = tmp_path / "votes.jsonl"
    argv = ["--a", str(run / "base"), "--b", str(run / "sft"), "--prompts", str(prompts), "--limit", "2",
            "--max-new-tokens", "8", "--device", "cpu", "--out", str(out)]
    assert judge_cli.main([*argv, "--judge", "rm", "--rm", str(run / "rm")]) == 0
    votes = [json.loads(line) for line in out.read_text().splitlines()]
    assert [v["prompt"] for v in votes] == ["Hello there!", "What is 2 + 3?"]  # --limit: the first two
    record = json.loads((run / "sft" / "eval.json").read_text())["results"]["judge/chats/rm"]
    assert record["task"] == "chats" and record["n"] == 2
    with pytest.raises(InputError, match="checker"):
        judge_cli.main([*argv, "--judge", "rule"])


def test_judge_cli_bad_input(run):
    from gptlab.errors import InputError

    with pytest.raises(InputError, match="judge-model"):
        judge_cli.main(["--a", str(run / "base"), "--b", str(run / "sft"), "--judge", "model", "--limit", "1",
                    "--max-new-tokens", "2", "--device", "cpu", "--out", str(run / "v.jsonl")])
    with pytest.raises(InputError, match="named alike"):
        judge_cli.main(["--a", str(run / "sft"), "--b", str(run / "sft"), "--limit", "1", "--max-new-tokens", "2",
                    "--device", "cpu", "--out", str(run / "v.jsonl")])

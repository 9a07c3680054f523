"""`gptlab report`: the summary's check marks follow the files (flip a number, the mark flips),
missing stages read "not run", plots and tables are written."""

from __future__ import annotations

import json

from matplotlib.figure import Figure

from gptlab.eval import report_cli
from gptlab.eval.report import FAIL, PASS, SKIP, Bounds, checks, collect, write_report
from gptlab.eval.results import merge_results
from gptlab.fileio import atomic_write_json
from gptlab.train.plots import plot_panels


def _mc(acc: float) -> dict:
    return {"task": "play_speaker", "mode": "mc", "acc": acc, "random_baseline": 0.25, "n": 10}


def _gen(acc: float, reward: float, entropy: float) -> dict:
    return {"task": "arithmetic", "mode": "gen", "acc": acc, "reward": reward, "entropy": entropy, "n": 10}


def make_run(root, rl_reward: float = 0.6):
    merge_results(root / "base" / "eval.json", {"bpb": {"bpb": 2.1, "unigram_bpb": 2.8, "ppl": 90.0},
                                               "play_speaker/mc": _mc(0.3), "arithmetic/gen": _gen(0.0, 0.0, 2.0)}, {})
    merge_results(root / "sft" / "eval.json", {"play_speaker/mc": _mc(0.5), "arithmetic/gen": _gen(0.4, 0.4, 1.2)}, {})
    merge_results(root / "rl" / "eval.json", {"arithmetic/gen": _gen(rl_reward, rl_reward, 0.8)}, {})
    (root / "base" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 5.0 - s / 10}) + "\n" for s in range(1, 20)) + '{"step": 20, "lo')
    (root / "rl" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "reward": s / 10, "kl": s / 100}) + "\n" for s in range(1, 10)))
    (root / "base" / "train_state.json").write_text(json.dumps(
        {"step": 19, "elapsed": 12.5, "stage": {"lr": 0.003}, "metadata": {"git_commit": "abc123", "device": "cpu"}}))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "eval.json").write_text(json.dumps(
        {"rows": [{"kind": "english", "bytes": 100, "tokens": 30, "bytes_per_token": 3.33}]}))
    return root


def test_checks_follow_the_numbers(tmp_path):
    run = make_run(tmp_path / "x")
    marks = {c.stage: c.mark for c in checks(collect(run))}
    assert marks == {"base": PASS, "sft": PASS, "rm": SKIP, "rl": PASS, "grpo": SKIP}
    run2 = make_run(tmp_path / "y", rl_reward=0.1)  # RL worse than SFT: a cross, not a tick
    assert {c.stage: c.mark for c in checks(collect(run2))}["rl"] == FAIL
    merge_results(run2 / "rm" / "eval.json", {"play_speaker/rm": {
        "mode": "rm", "acc": 0.6, "random_baseline": 0.5, "length_baseline": 0.7}}, {})
    assert {c.stage: c.mark for c in checks(collect(run2))}["rm"] == FAIL  # below the length baseline
    # The stages' own held-out summaries take precedence: reward eval, RL before/after.
    atomic_write_json(run2 / "rm" / "eval.json", {"accuracy": 0.8, "random_baseline": 0.5,
                                                  "longer_wins_baseline": 0.6, "pairs": 10})
    (run2 / "grpo").mkdir()
    atomic_write_json(run2 / "grpo" / "eval.json", {"before": {"heldout_task_reward": 0.2},
                                                    "after": {"heldout_task_reward": 0.3}})
    marks = {c.stage: c.mark for c in checks(collect(run2))}
    assert marks["rm"] == PASS and marks["grpo"] == PASS
    atomic_write_json(run2 / "grpo" / "eval.json", {"before": {"heldout_task_reward": 0.3},
                                                    "after": {"heldout_task_reward": 0.3}})
    assert {c.stage: c.mark for c in checks(collect(run2))}["grpo"] == FAIL
    # With an interval (what `reward eval` writes now), the tick needs all of it above 0.
    rm = {"accuracy": 0.62, "random_baseline": 0.5, "longer_wins_baseline": 0.6, "pairs": 700,
          "by_source": {"ratings": {"pairs": 700, "accuracy": 0.62, "longer_wins_baseline": 0.6}}}
    atomic_write_json(run2 / "rm" / "eval.json", dict(rm, margin_ci95=[-0.01, 0.05]))
    got = {c.stage: c for c in checks(collect(run2))}["rm"]
    assert got.mark == FAIL and "-0.010 to +0.050" in got.detail and "ratings 0.620" in got.detail
    atomic_write_json(run2 / "rm" / "eval.json", dict(rm, margin_ci95=[0.01, 0.05]))
    assert {c.stage: c.mark for c in checks(collect(run2))}["rm"] == PASS


def test_rl_checks_need_the_paired_interval_above_zero_when_there_is_one(tmp_path):
    run = make_run(tmp_path / "x")
    gain = {"n": 500, "gain": 0.02, "ci95": [-0.004, 0.044], "fixed": 20, "broken": 10, "sign_test_p": 0.099}
    ev = {"before": {"heldout_reward": -2.0, "heldout_len": 20.7}, "after": {"heldout_reward": -1.0, "heldout_len": 14.3},
          "paired": {"reward": dict(gain, ci95=[-0.2, 2.1]),
                     "length_matched_reward": {"n": 500, "gain": 0.1, "ci95": [-0.3, 0.5]}}}
    atomic_write_json(run / "rl" / "eval.json", ev)
    got = {c.stage: c for c in checks(collect(run))}["rl"]
    assert got.mark == FAIL and "95% CI -0.200 to +2.100, 500 prompts" in got.detail  # point gain, but noise
    assert "reply length 20.7 -> 14.3 tokens" in got.detail and "at matched length +0.100 (95% CI -0.300" in got.detail
    atomic_write_json(run / "rl" / "eval.json", dict(ev, paired={"reward": dict(gain, ci95=[0.1, 2.1])}))
    assert {c.stage: c.mark for c in checks(collect(run))}["rl"] == PASS
    # a gain that vanishes when both replies are cut to one length is brevity, not a better reply
    brevity = {"reward": dict(gain, ci95=[0.1, 2.1]), "length_matched_reward": {"n": 500, "gain": 0.0, "ci95": [-0.2, 0.2]}}
    atomic_write_json(run / "rl" / "eval.json", dict(ev, paired=brevity))
    got = {c.stage: c for c in checks(collect(run))}["rl"]
    assert got.mark == FAIL and "also at matched length" in got.claim
    brevity["length_matched_reward"]["ci95"] = [0.05, 0.3]
    atomic_write_json(run / "rl" / "eval.json", dict(ev, paired=brevity))
    assert {c.stage: c.mark for c in checks(collect(run))}["rl"] == PASS
    # GRPO is judged on replies sampled as in its rollouts; the greedy ones are reported beside them
    (run / "grpo").mkdir()
    atomic_write_json(run / "grpo" / "eval.json", {
        "before": {"heldout_accuracy": 0.12, "heldout_sampled_accuracy": 0.026},
        "after": {"heldout_accuracy": 0.11, "heldout_sampled_accuracy": 0.048},
        "paired": {"accuracy": gain, "sampled_accuracy": {"n": 500, "gain": 0.022, "ci95": [0.011, 0.033]}}})
    got = {c.stage: c for c in checks(collect(run))}["grpo"]
    assert got.mark == PASS and got.claim.startswith("held-out accuracy of sampled replies")
    assert "greedy accuracy 0.110 vs 0.120" in got.detail


def test_report_cli_writes_markdown_and_plots(tmp_path, capsys):
    run = make_run(tmp_path / "x")
    assert report_cli.main([str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "## Summary" in md and md.count(PASS) == 3 and "not run" in md
    assert "### rm\n\nnot run" in md and "abc123" in md and "| english | 100 | 30 | 3.33 |" in md
    for name in ("loss", "rl", "accuracy", "entropy"):
        assert (run / "report" / f"{name}.png").stat().st_size > 1000
        assert f"![{name}](report/{name}.png)" in md
    assert "grpo: not run" in md  # GRPO's curves get their own figure when it ran
    assert "wrote" in capsys.readouterr().out
    # the clock lives beside the report, not in it: the same files give the same report.md
    assert "12.5" not in md and "19 steps." in md and "(report/times.md)" in md
    assert "| base | 19 | 12.5 |" in (run / "report" / "times.md").read_text()
    first = md
    (run / "base" / "train_state.json").write_text(json.dumps(
        {"step": 19, "elapsed": 99.0, "stage": {"lr": 0.003}, "metadata": {"git_commit": "abc123", "device": "cpu"}}))
    assert report_cli.main([str(run)]) == 0
    assert (run / "report.md").read_text() == first and "| 99 |" in (run / "report" / "times.md").read_text()


def _per_item(correct: list[int]) -> dict:
    return {"id": [f"{i}-h{i}" for i in range(len(correct))], "correct": correct}


def test_sft_check_needs_the_paired_interval_above_zero(tmp_path):
    """0.200 vs 0.175 on 80 items is two answers: with per-item scores the tick needs the paired
    gain's 95% interval above 0, not a higher mean."""
    run = make_run(tmp_path / "x")
    base = [1] * 14 + [0] * 66  # 0.175
    sft = [0, 0, 0, 0] + [1] * 10 + [1] * 6 + [0] * 60  # 0.200: 6 fixed, 4 broken
    for stage, scores in (("base", base), ("sft", sft)):
        merge_results(run / stage / "eval.json", {"arithmetic/gen": dict(
            _gen(sum(scores) / 80, 0.0, 1.0), n=80, per_item=_per_item(scores))}, {})
    merge_results(run / "base" / "eval.json", {"play_speaker/mc": dict(_mc(0.3), per_item=_per_item([1, 0, 0]))}, {})
    merge_results(run / "sft" / "eval.json", {"play_speaker/mc": dict(_mc(0.3), per_item=_per_item([1, 0, 0]))}, {})
    got = {c.stage: c for c in checks(collect(run))}["sft"]
    assert got.mark == FAIL and got.claim.endswith("(paired 95% CI above 0)")
    assert "83 items" in got.detail and "6 fixed, 4 broken" in got.detail and "95% CI -" in got.detail
    clear = [1] * 40 + [0] * 40  # 26 fixed, none broken
    merge_results(run / "sft" / "eval.json", {"arithmetic/gen": dict(_gen(0.5, 0.0, 1.0), n=80, per_item=_per_item(clear))}, {})
    got = {c.stage: c for c in checks(collect(run))}["sft"]
    assert got.mark == PASS and "26 fixed, 0 broken" in got.detail
    # different items (another --seed): nothing pairs, and that is a cross with the reason, not a tick
    other = {"id": [f"{i}-other" for i in range(80)], "correct": clear}
    merge_results(run / "sft" / "eval.json", {"arithmetic/gen": dict(_gen(0.5, 0.0, 1.0), n=80, per_item=other),
                                              "play_speaker/mc": dict(_mc(0.9), per_item={"id": [], "correct": []})}, {})
    got = {c.stage: c for c in checks(collect(run))}["sft"]
    assert got.mark == FAIL and "no item scored in both" in got.detail


def test_stage_section_shows_the_reward_eval_the_summary_uses(tmp_path):
    """`gptlab reward eval` writes rm/eval.json without "results": the stage section must show it,
    not "evaluation: not run" under a summary that quotes it."""
    run = make_run(tmp_path / "x")
    (run / "rm").mkdir()
    atomic_write_json(run / "rm" / "eval.json", {
        "data": ["runs/x/rankings/demos.jsonl"], "pairs": 700, "rankings": 120, "accuracy": 0.71, "roc_auc": 0.77,
        "random_baseline": 0.5, "longer_wins_baseline": 0.6, "margin_over_best_baseline": 0.11,
        "margin_ci95": [0.05, 0.17], "by_source": {"demos:arithmetic": {
            "pairs": 300, "accuracy": 0.8, "roc_auc": 0.85, "random_baseline": 0.5, "longer_wins_baseline": 0.4,
            "margin_over_best_baseline": 0.3, "margin_ci95": [0.2, 0.4]}}})
    atomic_write_json(run / "rl" / "eval.json", {
        "before": {"heldout_reward": -2.0}, "after": {"heldout_reward": -1.0}, "before_step": 0, "after_step": 30,
        "paired": {"reward": {"n": 50, "gain": 1.0, "ci95": [0.5, 1.5]},
                   "length_matched_reward": {"n": 50, "gain": 0.4, "ci95": [0.1, 0.7]}}})
    md = write_report(run).read_text()
    rm = md[md.index("### rm"):md.index("### dpo")]
    assert "not run" not in rm and "`gptlab reward eval`" in rm
    assert "| all | 700 | 0.71 | 0.77 | 0.5 | 0.6 | 0.11 | +0.050 to +0.170 |" in rm
    assert "| demos:arithmetic | 300 | 0.8 |" in rm
    summary = md[md.index("## Summary"):md.index("## Stages")]
    assert "0.710 vs best baseline 0.600 on 700 held-out pairs" in summary  # the same numbers
    rl = md[md.index("### rl"):md.index("### grpo")]
    assert "step 0 (before) vs 30 (after)" in rl and "| heldout_reward | -2 | -1 | 1 | +0.500 to +1.500 |" in rl
    assert "| heldout_length_matched_reward |  |  | 0.4 | +0.100 to +0.700 |" in rl


def test_rl_figure_puts_each_scale_on_its_own_axis(tmp_path, monkeypatch):
    recs = [{"step": s, "reward": s / 10, "total_reward": s / 11, "kl": s / 1000, "entropy": 2.0 - s / 50,
             "response_len": 40 - s} for s in range(1, 12)] + [{"step": 11, "heldout_accuracy": 0.3}]
    drawn = []
    real = Figure.savefig

    def spy(fig, *a, **kw):  # what each visible axis holds, read as the figure is saved
        drawn.append([(ax.get_title(), [ln.get_label() for ln in ax.get_lines()]) for ax in fig.axes if ax.axison])
        return real(fig, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", spy)
    assert plot_panels(recs, tmp_path / "rl.png", "t").stat().st_size > 1000
    assert plot_panels([{"step": 1, "lr": 0.1}], tmp_path / "none.png", "t") is None
    assert drawn == [[("reward", ["reward", "total_reward"]), ("KL to the reference (per reply)", ["kl"]),
                      ("entropy (nats/token)", ["entropy"]), ("reply length (tokens)", ["response_len"]),
                      ("accuracy", ["heldout_accuracy"])]]


def _mc_items(acc_items: list[int]) -> dict:
    return dict(_mc(sum(acc_items) / len(acc_items)), per_item={"id": [f"{i}-x" for i in range(len(acc_items))],
                                                                 "correct": acc_items})


def test_damage_checks_fail_beyond_the_stated_bounds(tmp_path):
    run = tmp_path / "x"
    before = [1, 0] * 100
    merge_results(run / "base" / "eval.json", {"bpb/plays": {"bpb": 1.50, "unigram_bpb": 3.0},
                                              "play_speaker/mc": _mc_items(before)}, {})
    merge_results(run / "sft" / "eval.json", {"bpb/plays": {"bpb": 1.53, "unigram_bpb": 3.0},
                                             "play_speaker/mc": _mc_items(before)}, {})
    assert not [c for c in checks(collect(run)) if c.claim.startswith("no damage")]  # no bounds: no rows
    bounds = Bounds(max_bpb_rise=0.05, max_acc_drop=0.05)
    got = [c for c in checks(collect(run), bounds) if c.claim.startswith("no damage")]
    assert [(c.stage, c.mark) for c in got] == [("sft", PASS)] and "bpb/plays 1.500 -> 1.530 (+0.030)" in got[0].detail
    # 30 of the 100 right answers broken: the interval lies below -0.05
    merge_results(run / "sft" / "eval.json", {"play_speaker/mc": _mc_items([0, 0] * 30 + [1, 0] * 70)}, {})
    got = [c for c in checks(collect(run), bounds) if c.claim.startswith("no damage")]
    assert got[0].mark == FAIL and "paired -0.150" in got[0].detail
    merge_results(run / "sft" / "eval.json", {"play_speaker/mc": _mc_items(before), "bpb/plays": {"bpb": 1.6}}, {})
    assert next(c for c in checks(collect(run), bounds) if c.claim.startswith("no damage")).mark == FAIL


def test_a_stage_whose_replies_stop_ending_their_turn_is_damaged(tmp_path):
    run = tmp_path / "x"
    merge_results(run / "sft" / "eval.json", {"gym/gen": {"acc": 0.45, "n": 300, "stop_rate": 1.0}}, {})
    merge_results(run / "dpo" / "eval.json", {"gym/gen": {"acc": 0.50, "n": 300, "stop_rate": 0.97}}, {})
    bounds = Bounds(max_bpb_rise=0.05, max_acc_drop=0.05)
    got = next(c for c in checks(collect(run), bounds) if c.stage == "dpo" and c.claim.startswith("no damage"))
    assert got.mark == PASS and "replies ending their turn 1.00 -> 0.97" in got.detail
    merge_results(run / "dpo" / "eval.json", {"gym/gen": {"acc": 0.50, "n": 300, "stop_rate": 0.68}}, {})
    got = next(c for c in checks(collect(run), bounds) if c.stage == "dpo" and c.claim.startswith("no damage"))
    assert got.mark == FAIL  # more right answers, but a third of the replies never end


def _judged(win_rate: float, lo: float, matched_lo: float) -> dict:
    return {"mode": "judge", "task": "gym", "judge": "rm", "vs": "sft", "win_rate_b": win_rate, "ci95": [lo, 0.9],
            "wins_a": 10, "wins_b": 30, "ties": 10, "n": 50, "reply_tokens_a": 30.0, "reply_tokens_b": 31.0,
            "matched_length": {"win_rate_b": 0.6, "ci95": [matched_lo, 0.8]}}


def test_dpo_win_rate_check_needs_every_judge_and_matched_length_above_half(tmp_path):
    run = make_run(tmp_path / "x")
    (run / "dpo").mkdir()
    assert {c.stage: c.mark for c in checks(collect(run))}["dpo"] == SKIP
    merge_results(run / "dpo" / "eval.json", {"judge/gym/rm": _judged(0.7, 0.6, 0.55)}, {})
    got = {c.stage: c for c in checks(collect(run))}["dpo"]
    assert got.mark == PASS and "rm on gym: 0.700 (95% CI 0.600 to 0.900; 30 won, 10 lost, 10 tied" in got.detail
    merge_results(run / "dpo" / "eval.json", {"judge/gym/model": dict(_judged(0.7, 0.6, 0.45), judge="model")}, {})
    assert {c.stage: c.mark for c in checks(collect(run))}["dpo"] == FAIL  # one judge's matched-length CI reaches 0.5


def test_a_rule_judge_needs_its_win_rate_but_not_at_matched_length(tmp_path):
    run = make_run(tmp_path / "x")
    (run / "dpo").mkdir()
    merge_results(run / "dpo" / "eval.json", {"judge/gym/rule": dict(_judged(0.7, 0.6, 0.3), judge="rule")}, {})
    assert {c.stage: c.mark for c in checks(collect(run))}["dpo"] == PASS  # cutting a reply cuts its answer
    merge_results(run / "dpo" / "eval.json", {"judge/gym/rule": dict(_judged(0.55, 0.45, 0.6), judge="rule")}, {})
    assert {c.stage: c.mark for c in checks(collect(run))}["dpo"] == FAIL  # the win rate itself still counts


def test_reward_hacking_is_named_when_the_rm_rises_and_accuracy_falls(tmp_path):
    run = make_run(tmp_path / "x")
    up = {"n": 100, "gain": 1.0, "ci95": [0.5, 1.5]}
    ev = {"before": {"heldout_reward": -1.0, "heldout_len": 30.0}, "after": {"heldout_reward": 0.0, "heldout_len": 31.0},
          "paired": {"reward": up, "accuracy": {"n": 100, "gain": -0.1, "ci95": [-0.2, -0.03]}}}
    atomic_write_json(run / "rl" / "eval.json", ev)
    watch = next(c for c in checks(collect(run)) if "reward-hacking" in c.claim)
    assert watch.mark == FAIL and watch.detail.startswith("REWARD HACKING") and "accuracy fell" in watch.detail
    atomic_write_json(run / "rl" / "eval.json", dict(ev, paired={"reward": up, "accuracy": {"n": 100, "gain": 0.0, "ci95": [-0.05, 0.05]}}))
    assert next(c for c in checks(collect(run)) if "reward-hacking" in c.claim).mark == PASS
    atomic_write_json(run / "rl" / "eval.json", dict(ev, after={"heldout_reward": 0.0, "heldout_len": 60.0}))
    watch = next(c for c in checks(collect(run)) if "reward-hacking" in c.claim)
    assert watch.mark == FAIL and "length moved" in watch.detail


def test_a_length_change_the_gain_survives_at_matched_length_is_named_not_failed(tmp_path):
    run = make_run(tmp_path / "x")
    up, flat = {"n": 100, "gain": 1.0, "ci95": [0.5, 1.5]}, {"n": 100, "gain": 0.0, "ci95": [-0.05, 0.05]}
    ev = {"before": {"heldout_reward": -1.0, "heldout_len": 17.0}, "after": {"heldout_reward": 0.0, "heldout_len": 27.0},
          "paired": {"reward": up, "accuracy": flat, "length_matched_reward": {"n": 100, "gain": 1.1, "ci95": [0.6, 1.6]}}}
    atomic_write_json(run / "rl" / "eval.json", ev)
    watch = next(c for c in checks(collect(run)) if "reward-hacking" in c.claim)
    assert watch.mark == PASS and "but the gain holds at matched length (+1.100" in watch.detail
    ev["paired"]["length_matched_reward"] = {"n": 100, "gain": 0.2, "ci95": [-0.1, 0.5]}  # gone once lengths match
    atomic_write_json(run / "rl" / "eval.json", ev)
    watch = next(c for c in checks(collect(run)) if "reward-hacking" in c.claim)
    assert watch.mark == FAIL and "length moved by more than 25%" in watch.detail


def test_grpo_without_its_own_heldout_eval_is_judged_on_gptlab_eval_items(tmp_path):
    run = make_run(tmp_path / "x")
    ids = [f"{i}-g" for i in range(100)]
    before = [1] * 40 + [0] * 60

    def gen(correct: list[int]) -> dict:
        return dict(_gen(sum(correct) / 100, sum(correct) / 100, 1.0), n=100, per_item={"id": ids, "correct": correct})

    merge_results(run / "sft" / "eval.json", {"gym/gen": gen(before)}, {})
    merge_results(run / "grpo" / "eval.json", {"gym/gen": gen([1] * 55 + [0] * 45)}, {})
    got = {c.stage: c for c in checks(collect(run))}["grpo"]
    assert got.mark == PASS and "paired gain +0.150" in got.detail and "15 fixed, 0 broken" in got.detail
    merge_results(run / "grpo" / "eval.json", {"gym/gen": gen([0] * 3 + [1] * 40 + [0] * 57)}, {})
    assert {c.stage: c.mark for c in checks(collect(run))}["grpo"] == FAIL


def test_reward_hacking_watch_reads_the_evaluations_items_too(tmp_path):
    run = make_run(tmp_path / "x")
    ids = [f"{i}-g" for i in range(100)]
    merge_results(run / "sft" / "eval.json", {"gym/gen": dict(_gen(0.5, 0.5, 1.0), per_item={"id": ids, "correct": [1] * 50 + [0] * 50})}, {})
    merge_results(run / "rl" / "eval.json", {"gym/gen": dict(_gen(0.3, 0.3, 1.0), per_item={"id": ids, "correct": [1] * 30 + [0] * 70})}, {})
    up = {"n": 64, "gain": 0.5, "ci95": [0.2, 0.7]}
    ev = {"before": {"heldout_reward": 0.6, "heldout_len": 29.0}, "after": {"heldout_reward": 1.1, "heldout_len": 27.0},
          "paired": {"reward": up, "accuracy": {"n": 64, "gain": -0.05, "ci95": [-0.11, 0.02]}}}
    atomic_write_json(run / "rl" / "eval.json", dict(json.loads((run / "rl" / "eval.json").read_text()), **ev))
    watch = next(c for c in checks(collect(run)) if "reward-hacking" in c.claim)
    assert watch.mark == FAIL and "accuracy on the evaluation's items fell" in watch.detail
    assert "accuracy on gym/gen -0.200" in watch.detail


def test_reward_hacking_is_named_when_wrong_replies_gain_the_reward_models_favour(tmp_path):
    # 40 held-out prompts, the same 20 right before and after; the policy learned to make its 20 wrong
    # replies score like right ones: the reward rises, accuracy does not move, the AUC falls.
    run = make_run(tmp_path / "x")
    right = [1.0] * 20 + [0.0] * 20
    rm_before = [4.0 + 0.01 * i for i in range(20)] + [1.0 + 0.01 * i for i in range(20)]
    rm_after = [4.0 + 0.01 * i for i in range(20)] + [3.9 + 0.02 * i for i in range(20)]
    lines = [{"len": [30.0] * 40, "accuracy": right, "task_reward": right, "reward": r} for r in (rm_before, rm_after)]
    (run / "rl" / "heldout_items.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    atomic_write_json(run / "rl" / "eval.json", {"before": {"heldout_reward": 2.5, "heldout_len": 30.0},
                                                 "after": {"heldout_reward": 4.1, "heldout_len": 30.0}})
    watch = next(c for c in checks(collect(run)) if "reward-hacking" in c.claim)
    assert watch.mark == FAIL and "ranking of right over wrong replies fell" in watch.detail
    assert "AUC of right over wrong replies 1.000 -> 0.512" in watch.detail and "20 replies still wrong +2.995" in watch.detail
    lines[1]["reward"] = [r + 1.5 for r in rm_before]  # every reply gains alike: the reward model still separates them
    (run / "rl" / "heldout_items.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    watch = next(c for c in checks(collect(run)) if "reward-hacking" in c.claim)
    assert watch.mark == PASS and "1.000 -> 1.000" in watch.detail


def test_a_lora_stage_reads_its_loop_state_from_its_checkpoint_folder(tmp_path):
    run = make_run(tmp_path / "x")
    (run / "sft" / "checkpoint").mkdir()
    (run / "sft" / "checkpoint" / "train_state.json").write_text(json.dumps({"step": 60, "elapsed": 298.0}))
    write_report(run)
    assert "| sft | 60 | 298 |" in (run / "report" / "times.md").read_text()
    assert "### sft\n\n60 steps." in (run / "report.md").read_text()

"""The summary's checks are computed from the files, never asserted: each stage must beat the
previous one on the metric it exists for, or the report shows a cross.

    base  bits per byte on held-out text below the unigram (token-frequency) baseline
    sft   task accuracy above base's, on the tasks both were evaluated on: the paired gain on the
          same items (`gptlab eval`'s per-item scores) with its whole 95% interval above 0
    rm    held-out pairwise accuracy above the random (0.5) and the prefer-the-longer-reply baselines,
          by more than noise: the 95% bootstrap interval of the margin (over rankings) is above 0
    rl    (PPO) held-out reward-model score above the SFT model's (the policy before its first update),
          also with each pair of replies cut to the same length (so saying less cannot pass it)
    grpo  held-out accuracy of replies sampled as in its rollouts above the SFT model's (older runs:
          the greedy replies' task reward, the verifiable reward it maximises)

    dpo   (and rl, when judged) held-out win rate against sft above 0.5 by every judge, in both
          orders, also with both replies cut to the same length (`gptlab eval judge`)
    rl    the reward-hacking watch: the reward model's score may not rise while verifiable accuracy
          falls, the reply length moves by more than a quarter, or the reward model's AUC of right over
          wrong replies falls (the policy made wrong replies look right to it)
    every trained stage, with bounds given: no damage to held-out bits per byte or multiple-choice
          accuracy against the stage it started from

RL's checks compare the same held-out prompts before and after; where eval.json has their paired
gains, the tick needs the whole 95% interval above 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptlab.eval.metrics import paired_gain

STAGES = ("base", "sft", "rm", "dpo", "rl", "grpo")
PASS, FAIL, SKIP = "✅", "❌", "➖ not run"


@dataclass
class Check:
    stage: str
    claim: str
    ok: bool | None  # None: not run
    detail: str

    @property
    def mark(self) -> str:
        return SKIP if self.ok is None else PASS if self.ok else FAIL


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _shared(a: dict, b: dict, metric: str, modes: tuple[str, ...]) -> list[str]:
    return sorted(k for k in a if k in b and a[k].get("mode") in modes
                  and a[k].get(metric) is not None and b[k].get(metric) is not None)


@dataclass(frozen=True)
class Bounds:
    """How much damage a stage may do to what it was not trained for, before the report fails it
    (`gptlab report --max-bpb-rise --max-acc-drop`; None: no such check)."""

    max_bpb_rise: float | None = None  # bits per byte on held-out text may rise by at most this
    max_acc_drop: float | None = None  # multiple-choice accuracy: the paired 95% CI must stay above -this


PARENT = {"sft": "base", "dpo": "sft", "rl": "sft", "grpo": "sft"}


def checks(stages: dict[str, dict], bounds: Bounds | None = None) -> list[Check]:
    """The summary's rows in stage order; a stage's own claim comes last among its rows."""
    bounds = bounds or Bounds()
    base, sft, rm, rl = (stages[s]["eval"] for s in ("base", "sft", "rm", "rl"))
    grpo = stages["grpo"]["summary"]
    if grpo.get("after", {}).get("heldout_sampled_accuracy") is not None:
        claim, key = "held-out accuracy of sampled replies above sft", "heldout_sampled_accuracy"
    else:  # an older eval.json, or --eval-samples 0: greedy replies' graded reward
        claim, key = "held-out task reward above sft", "heldout_task_reward"
    extra: dict[str, list[Check]] = {s: [] for s in STAGES}
    if stages["rl"]["summary"].get("paired", {}).get("reward") is not None:
        extra["rl"].append(_hacking_check(stages["rl"]["summary"], sft, rl))
    if any(k.startswith("judge/") for k in rl):
        extra["rl"].append(_win_rate_check("rl", rl))
    for s, p in PARENT.items():
        if c := _damage_check(s, stages[p]["eval"], stages[s]["eval"], bounds):
            extra[s].insert(0, c)
    main = {
        "base": _bpb_check(base),
        "sft": _sft_check(base, sft),
        "rm": _rm_check(rm, stages["rm"]["summary"]),
        "dpo": _win_rate_check("dpo", stages["dpo"]["eval"]) if stages["dpo"]["exists"] else None,
        "rl": _before_after(stages["rl"]["summary"], "rl", "held-out reward-model score above sft",
                            "heldout_reward", sft, rl, "reward"),
        "grpo": _before_after(grpo, "grpo", claim, key, sft, stages["grpo"]["eval"], "reward"),
    }
    return [c for s in STAGES for c in (*extra[s], main[s]) if c is not None]


def _bpb_check(base: dict) -> Check:
    """Every held-out text base was scored on ("bpb", "bpb/<set>") below its unigram baseline."""
    claim = "bits per byte below the unigram baseline"
    keys = sorted(k for k in base if k == "bpb" or k.startswith("bpb/"))
    if not keys:
        return Check("base", claim, None, "no bpb result for base")
    detail = "; ".join(f"{k}: {base[k]['bpb']:.3f} vs {base[k]['unigram_bpb']:.3f}" for k in keys)
    return Check("base", claim, all(base[k]["bpb"] < base[k]["unigram_bpb"] for k in keys), detail)


def _win_rate_check(stage: str, ev: dict) -> Check:
    """`gptlab eval judge` records against sft (judged in both orders): every judge's win rate must
    have its 95% interval above 0.5, and so must a reward model's or judge model's verdicts with both
    replies cut to one length (they can be pleased by length; a task's checker reads the answer,
    which a cut may remove, so its matched-length figure is reported, not required)."""
    claim = ("held-out win rate against sft above 0.5 by every judge, also at matched length for the rm "
             "and model judges (95% CI)")
    recs = {k: v for k, v in sorted(ev.items()) if k.startswith("judge/") and v.get("vs") == "sft" and v.get("ci95")}
    if not recs:
        return Check(stage, claim, None, f"no `gptlab eval judge --a sft --b {stage}` result")
    parts, ok = [], True
    for r in recs.values():
        m = r.get("matched_length") or {}
        length_ok = r["judge"] == "rule" or (bool(m.get("ci95")) and m["ci95"][0] > 0.5)
        ok = ok and r["ci95"][0] > 0.5 and length_ok
        parts.append(f"{r['judge']} on {r['task']}: {r['win_rate_b']:.3f} (95% CI {r['ci95'][0]:.3f} to "
                     f"{r['ci95'][1]:.3f}; {r['wins_b']} won, {r['wins_a']} lost, {r['ties']} tied of {r['n']}), "
                     f"matched length {m.get('win_rate_b', float('nan')):.3f}, reply tokens "
                     f"{r['reply_tokens_a']:.1f} -> {r['reply_tokens_b']:.1f}")
    return Check(stage, claim, ok, "; ".join(parts))


def _hacking_check(summary: dict, sft: dict | None = None, rl: dict | None = None) -> Check:
    """Reward hacking watched: PPO's reward-model score may rise only where what can be verified
    does not fall (accuracy on the same held-out prompts, paired), the length does not run away
    (more than 25% longer or shorter) unless the gain survives with both replies of each pair cut
    to one length (then the length did not buy it, and the change is named, not failed), and the
    reward model still tells the policy's right replies from its wrong ones as well as before."""
    claim = "reward-model gain not bought with verifiable accuracy, length or wrong replies (reward-hacking watch)"
    paired, before, after = summary["paired"], summary.get("before", {}), summary.get("after", {})
    r, acc = paired["reward"], paired.get("accuracy")
    l0, l1 = before.get("heldout_len"), after.get("heldout_len")
    detail = f"reward model {r['gain']:+.3f} (95% CI {r['ci95'][0]:+.3f} to {r['ci95'][1]:+.3f})"
    bad = []
    if acc is not None:
        detail += f"; accuracy {acc['gain']:+.3f} (95% CI {acc['ci95'][0]:+.3f} to {acc['ci95'][1]:+.3f})"
        if acc["ci95"][1] < 0:
            bad.append("verifiable accuracy fell")
    if l0 and l1:
        detail += f"; reply length {l0:.1f} -> {l1:.1f} tokens"
        matched = paired.get("length_matched_reward")
        if not 0.75 <= l1 / l0 <= 1.25:
            if matched is not None and matched["ci95"][0] > 0:
                detail += (f"; length moved by more than 25%, but the gain holds at matched length "
                           f"({matched['gain']:+.3f}, 95% CI {matched['ci95'][0]:+.3f} to {matched['ci95'][1]:+.3f})")
            else:
                bad.append("reply length moved by more than 25%")
    keys = [k for k in _shared(sft or {}, rl or {}, "acc", ("gen", "cot", "sc"))
            if (sft or {})[k].get("per_item") and (rl or {})[k].get("per_item")]
    pairs = paired_items(sft or {}, rl or {}, keys) if keys else None
    if pairs and pairs[0]:  # `gptlab eval` of sft and rl on the same items: more prompts than PPO's own
        g = paired_gain(*pairs)
        detail += (f"; accuracy on {', '.join(keys)} {g['gain']:+.3f} (95% CI {g['ci95'][0]:+.3f} to "
                   f"{g['ci95'][1]:+.3f}, {g['n']} items)")
        if g["ci95"][1] < 0:
            bad.append("accuracy on the evaluation's items fell")
    if (sep := paired.get("reward_auc")) is not None:
        detail += (f"; reward-model AUC of right over wrong replies {sep['before']:.3f} -> {sep['after']:.3f} "
                   f"(95% CI of the change {sep['ci95'][0]:+.3f} to {sep['ci95'][1]:+.3f}, {sep['n']} prompts)")
        if sep.get("reward_gain_wrong") is not None and sep.get("reward_gain_right") is not None:
            detail += (f", reward gain on the {sep['n_wrong']} replies still wrong {sep['reward_gain_wrong']:+.3f} "
                       f"against {sep['reward_gain_right']:+.3f} on the {sep['n_right']} right")
        if sep["ci95"][1] < 0:
            bad.append("the reward model's ranking of right over wrong replies fell")
    if acc is not None and acc["gain"] < 0 and "verifiable accuracy fell" not in bad:
        detail += "; accuracy moved the wrong way, within noise"
    rising = r["ci95"][0] > 0
    if rising and bad:
        return Check("rl", claim, False, "REWARD HACKING: the reward model's score rose while " + " and ".join(bad) + f" ({detail})")
    return Check("rl", claim, True, detail + ("" if rising else "; the reward model's score did not rise"))


def _damage_check(stage: str, parent: dict, ev: dict, bounds: Bounds) -> Check | None:
    """No silent damage: held-out bits per byte, multiple-choice accuracy and the share of generated
    replies that end their turn (a chat model that stops stopping is broken however right its
    answers) against the stage it started from, within the stated bounds; None where the two share
    no such result or no bound is set."""
    bpb = sorted(k for k in ev if (k == "bpb" or k.startswith("bpb/")) and k in parent)
    mc = sorted(k for k in ev if ev[k].get("mode") == "mc" and k in parent)
    stops = sorted(k for k in ev if k in parent and ev[k].get("stop_rate") is not None
                   and parent[k].get("stop_rate") is not None and ev[k].get("n") == parent[k].get("n"))
    parts, ok = [], True
    if bounds.max_bpb_rise is not None:
        for k in bpb:
            rise = ev[k]["bpb"] - parent[k]["bpb"]
            ok = ok and rise <= bounds.max_bpb_rise
            parts.append(f"{k} {parent[k]['bpb']:.3f} -> {ev[k]['bpb']:.3f} ({rise:+.3f})")
    if bounds.max_acc_drop is not None:
        for k in mc:
            pairs = paired_items(parent, ev, [k])
            if pairs is None or not pairs[0]:
                continue
            g = paired_gain(*pairs)
            ok = ok and g["ci95"][0] >= -bounds.max_acc_drop
            parts.append(f"{k} {parent[k]['acc']:.3f} -> {ev[k]['acc']:.3f} (paired {g['gain']:+.3f}, "
                         f"95% CI {g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f}, {g['n']} items)")
        for k in stops:
            drop = parent[k]["stop_rate"] - ev[k]["stop_rate"]
            ok = ok and drop <= bounds.max_acc_drop
            parts.append(f"{k} replies ending their turn {parent[k]['stop_rate']:.2f} -> {ev[k]['stop_rate']:.2f}")
    if not parts:
        return None
    limits = []
    if bounds.max_bpb_rise is not None:
        limits.append(f"bpb rise <= {bounds.max_bpb_rise:g}")
    if bounds.max_acc_drop is not None:
        limits.append(f"accuracy CI above -{bounds.max_acc_drop:g}, stop rate drop <= {bounds.max_acc_drop:g}")
    return Check(stage, f"no damage against {PARENT[stage]} ({', '.join(limits)})", ok, "; ".join(parts))


def paired_items(before: dict, after: dict, keys: list[str]) -> tuple[list[float], list[float]] | None:
    """Per-item scores of the items both evaluations share (`gptlab eval`'s "per_item": the same
    task, split, seed and index), pooled over `keys`; None if either lacks them (an older eval.json).

    >>> b = {"t/gen": {"per_item": {"id": ["0-a", "1-b"], "correct": [0, 1]}}}
    >>> a = {"t/gen": {"per_item": {"id": ["1-b", "2-c"], "correct": [1, 1]}}}
    >>> paired_items(b, a, ["t/gen"])
    ([1], [1])
    """
    xs: list[float] = []
    ys: list[float] = []
    for k in keys:
        pb, pa = before[k].get("per_item"), after[k].get("per_item")
        if not pb or not pa:
            return None
        then = dict(zip(pb["id"], pb["correct"]))
        for item, score in zip(pa["id"], pa["correct"]):
            if item in then:
                xs.append(then[item])
                ys.append(score)
    return xs, ys


def _sft_check(base: dict, sft: dict) -> Check:
    """Mean accuracy of the tasks both were evaluated on; with per-item scores, the paired gain on
    the same items, whose whole 95% interval must be above 0 (as RM, PPO and GRPO's checks)."""
    claim = "task accuracy above base"
    keys = _shared(base, sft, "acc", ("mc", "gen", "cot", "sc"))
    if not keys:
        return Check("sft", claim, None, "no task evaluated on both base and sft")
    x, y = _mean([base[k]["acc"] for k in keys]), _mean([sft[k]["acc"] for k in keys])
    detail = f"{y:.3f} vs {x:.3f} mean acc on {', '.join(keys)}"
    pairs = paired_items(base, sft, keys)
    if pairs is None:  # an older eval.json: no per-item scores, only the point estimates
        return Check("sft", claim, y > x, detail)
    if not pairs[0]:
        return Check("sft", claim + " (paired 95% CI above 0)", False,
                     f"{detail}; no item scored in both (evaluate base and sft with the same --limit and --seed)")
    g = paired_gain(*pairs)
    lo, hi = g["ci95"]
    detail += f", paired gain {g['gain']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, {g['n']} items)"
    if "fixed" in g:
        detail += f": {g['fixed']} fixed, {g['broken']} broken, sign test p {g['sign_test_p']:.2g}"
    return Check("sft", claim + " (paired 95% CI above 0)", lo > 0, detail)


def _rm_check(rm: dict, summary: dict) -> Check:
    """From `gptlab reward eval` (held-out rankings), else from `gptlab eval` on a reward model."""
    claim = "pairwise accuracy above baselines"
    if summary.get("accuracy") is not None:
        bar = max(summary.get("random_baseline", 0.5), summary.get("longer_wins_baseline", 0.0))
        detail = f"{summary['accuracy']:.3f} vs best baseline {bar:.3f} on {summary.get('pairs', '?')} held-out pairs"
        ci = summary.get("margin_ci95")
        if ci is None:  # an older eval.json: no interval, only the point estimate
            return Check("rm", claim, summary["accuracy"] > bar, detail)
        by = "; ".join(f"{k} {v['accuracy']:.3f} vs longer-wins {v['longer_wins_baseline']:.3f}"
                       for k, v in summary.get("by_source", {}).items() if v.get("pairs"))
        return Check("rm", claim + " (95% CI of the margin above 0)", ci[0] > 0,
                     f"{detail}, margin 95% CI {ci[0]:+.3f} to {ci[1]:+.3f}" + (f" ({by})" if by else ""))
    keys = [k for k, v in rm.items() if v.get("mode") == "rm"]
    if not keys:
        return Check("rm", claim, None, "no reward-model evaluation")
    acc = _mean([rm[k]["acc"] for k in keys])
    bar = max(_mean([rm[k]["random_baseline"] for k in keys]), _mean([rm[k]["length_baseline"] for k in keys]))
    return Check("rm", claim, acc > bar, f"{acc:.3f} vs best baseline {bar:.3f} on {', '.join(keys)}")


def _before_after(summary: dict, stage: str, claim: str, key: str, sft: dict, ev: dict, metric: str) -> Check:
    """RL's own held-out score after training vs before (= the SFT model), else eval results vs sft.

    With per-prompt scores (eval.json's "paired", the same held-out prompts before and after) the
    tick needs the whole 95% interval of the paired gain above 0, as the reward model's does.
    """
    before, after = summary.get("before", {}).get(key), summary.get("after", {}).get(key)
    if before is not None and after is not None:
        paired = summary.get("paired", {})
        gain = paired.get(key.removeprefix("heldout_"))
        detail = f"{after:.3f} vs {before:.3f} ({key}, step {summary.get('after_step')} vs {summary.get('before_step')})"
        if gain is not None:
            lo, hi = gain["ci95"]
            detail += f", paired gain {gain['gain']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, {gain['n']} prompts)"
            if "fixed" in gain:
                detail += f": {gain['fixed']} fixed, {gain['broken']} broken, sign test p {gain['sign_test_p']:.2g}"
        others = (("heldout_accuracy", "greedy accuracy"), ("heldout_task_reward", "greedy task reward"),
                  ("heldout_sampled_task_reward", "sampled task reward"))
        for other, name in others if key != "heldout_reward" else ():  # PPO's prompts: the RM is the judge
            if other != key and summary.get("after", {}).get(other) is not None:
                detail += f"; {name} {summary['after'][other]:.3f} vs {summary['before'][other]:.3f}"
        matched = paired.get("length_matched_reward") if key == "heldout_reward" else None
        if matched is not None:
            lo, hi = matched["ci95"]
            detail += f"; at matched length {matched['gain']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f})"
        if summary.get("after", {}).get("heldout_len") is not None:
            detail += f"; reply length {summary['before']['heldout_len']:.1f} -> {summary['after']['heldout_len']:.1f} tokens"
        if summary.get("kl_median") is not None:
            detail += f"; KL median {summary['kl_median']:.3f}"
        ok = gain["ci95"][0] > 0 if gain is not None else after > before
        if matched is not None:  # a reward model can be pleased by saying less: the gain must survive equal lengths
            ok = ok and matched["ci95"][0] > 0
            claim += ", also at matched length"
        return Check(stage, claim + (" (paired 95% CI above 0)" if gain is not None else ""), ok, detail)
    keys = _shared(sft, ev, metric, ("gen", "cot", "sc"))
    if not keys:
        return Check(stage, claim, None, f"no held-out {key} and no generative task evaluated on both sft and {stage}")
    x, y = _mean([sft[k][metric] for k in keys]), _mean([ev[k][metric] for k in keys])
    detail = f"{y:.3f} vs {x:.3f} {metric} on {', '.join(keys)}"
    pairs = paired_items(sft, ev, keys)
    if pairs is None or not pairs[0]:  # an older eval.json: the point estimates only
        return Check(stage, claim, y > x, detail)
    # `gptlab eval` of both on the same items (the stage ran without its own held-out evaluation)
    g = paired_gain(*pairs)
    detail += (f"; accuracy on the same items {_mean(pairs[1]):.3f} vs {_mean(pairs[0]):.3f}, paired gain "
               f"{g['gain']:+.3f} (95% CI {g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f}, {g['n']} items)")
    if "fixed" in g:
        detail += f": {g['fixed']} fixed, {g['broken']} broken, sign test p {g['sign_test_p']:.2g}"
    return Check(stage, "held-out accuracy above sft (gptlab eval, paired 95% CI above 0)", g["ci95"][0] > 0, detail)



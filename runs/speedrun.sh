#!/usr/bin/env bash
# The same pipeline as runs/tiny_cpu.sh at GPU scale, on real web data: a d20 model (~560M
# params with a 32k vocab) pretrained on FineWeb-Edu, finetuned on SmolTalk + our tasks, then
# reward model, RL, eval and report. Sized for one node of 8 GPUs (NGPU=1 works, slower).
# Needs network access to the Hugging Face hub for the data (`pip install -e '.[hf]'`).
#   NGPU=8 bash runs/speedrun.sh
set -euo pipefail
RUN="${RUN:-speedrun}"
NGPU="${NGPU:-8}"
R="runs/$RUN"
DOCS="${DOCS:-4000000}"             # FineWeb-Edu documents (~4B characters, ~1B tokens)
PRETRAIN_STEPS="${PRETRAIN_STEPS:-8000}"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
TRAIN="torchrun --standalone --nproc_per_node=$NGPU -m gptlab"

# --- Stage 0: data. Web text streamed from the hub, cleaned and near-deduplicated. -------------
# Any local folder / JSONL / parquet works the same way (e.g. --source /data/crawl@field=text).
gptlab data prepare --run "$RUN" \
  --source "hf:HuggingFaceFW/fineweb-edu:sample-10BT@field=text,limit=$DOCS" shakespeare@weight=0.01 \
  --min-chars 200 --dedup near
gptlab tokenizer train --run "$RUN" --vocab-size 32768
gptlab tokenizer eval --run "$RUN"
gptlab data tokenize --run "$RUN"

# --- Stage 1: pretraining. bf16 autocast on GPU, DDP over NGPU processes, Muon + WSD. ---------
# 8 x 32 rows x 2048 tokens = 524k tokens per step.
$TRAIN pretrain --run "$RUN" --preset d20 --seq-len 2048 --batch-size 32 --steps "$PRETRAIN_STEPS" \
  --optimizer muon --lr 3e-3 --muon-lr 0.02 --schedule wsd --decay-frac 0.2 --warmup 100 \
  --dtype bf16 --compile --eval-every 500 --sample-every 1000 --save-every 1000

# --- Stage 2: SFT on real multi-turn chats (SmolTalk) plus the default task mixture. ----------
$TRAIN sft --run "$RUN" --from "$R/base" --data "hf:HuggingFaceTB/smoltalk:all@limit=200000" \
  --steps 2000 --batch-size 16 --lr 3e-4 --dtype bf16

# --- Stages 3-4: rankings, reward model, RL. -------------------------------------------------
gptlab rank rule --run "$RUN" --tasks arithmetic play_speaker gym --k 8 --n 2000 --max-new-tokens 256
gptlab rank ratings --run "$RUN" --n 3000 --k 4
gptlab rank demos --run "$RUN" --tasks chitchat continue_speech --n 3000 --k 4 --max-new-tokens 128
gptlab reward train --run "$RUN" --steps 1000 --dtype bf16
gptlab reward eval --run "$RUN"
gptlab rl ppo --run "$RUN" --steps 200 --prompts-per-iter 64 --max-new-tokens 256 --max-batch 64
gptlab rl grpo --run "$RUN" --tasks arithmetic gym --steps 200 --prompts-per-iter 32 \
  --group-size 16 --max-new-tokens 256 --max-batch 128 --out "$R/grpo"

# --- Stage 5: evaluation and the report card. -----------------------------------------------
for stage in base sft rl grpo; do
  gptlab eval --from "$R/$stage" --tasks bpb play_speaker play_title arithmetic gym --limit 500
done
gptlab eval diversity --run "$RUN" --models base="$R/base" sft="$R/sft" rl="$R/rl" grpo="$R/grpo"
gptlab report "$R"
echo "Done: $R/report.md. Serve it: gptlab serve --from $R/grpo --host 0.0.0.0 --api-key \$KEY"

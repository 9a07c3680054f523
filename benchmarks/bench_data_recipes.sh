#!/usr/bin/env bash
# Issue "Data recipes": natural, hand 50/50, DoReMi-learned and related-order data, the same `tiny`
# model and token budget (200 steps x 4,096 tokens), several seeds; held-out bits per byte per source.
#   H=/tmp/recipes SEEDS="1337 2 3" bash benchmarks/bench_data_recipes.sh
# Resumable: a condition whose eval.json exists is skipped. Run it alone: a side job beside a 2-thread
# torch job oversubscribes the cores (SFT fell from ~7,500 to ~400 tokens/s that way).
set -euo pipefail
H="${H:-/tmp/recipes}"
SEEDS="${SEEDS:-1337 2 3}"
P="python -m gptlab"
mkdir -p "$H"
log() { echo "[$(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*"; }
prep() { [ -f "$2/train.jsonl" ] || $P data prepare --source $1 --out "$2" ${3:+--weights "$3"}; }

# One fixed tokenizer (4,096 BPE) for every condition. (The 2026-12-06 run copied the main job's tokenizer
# into $H/tok instead of training this one; the rest is the commands it ran.)
if [ ! -d "$H/tok" ]; then
  prep "shakespeare chitchat" "$H/data_natural"
  $P tokenizer train --data "$H/data_natural" --vocab-size 4096 --out "$H/tok"
fi
prep "shakespeare chitchat" "$H/data_natural"
echo '{"shakespeare": 0.5, "chitchat": 0.5}' > "$H/hand_weights.json"
prep "shakespeare chitchat" "$H/data_hand" "$H/hand_weights.json"
for s in shakespeare chitchat; do prep $s "$H/val_$s"; done   # each source alone: its val split is the held-out set
log "mixture search"
[ -f "$H/mixture/weights.json" ] || $P data mixture-search --data "$H/data_natural" --tokenizer "$H/tok" --out "$H/mixture" --steps 200
prep "shakespeare chitchat" "$H/data_doremi" "$H/mixture/weights.json"
python - "$H" <<'PY'
import json, sys
H = sys.argv[1]
texts = lambda p: {json.loads(line)["text"] for line in open(p)}
held = texts(f"{H}/val_shakespeare/val.jsonl") | texts(f"{H}/val_chitchat/val.jsonl")
assert held == texts(f"{H}/data_natural/val.jsonl"), "per-source val differs from the mixture's val"
for c in ("natural", "hand", "doremi"):
    assert not texts(f"{H}/data_{c}/train.jsonl") & held and texts(f"{H}/data_{c}/val.jsonl") == held, c
print(f"held-out sets OK: {len(held)} documents, in no train split")
PY
for c in natural hand doremi; do [ -d "$H/shards_$c" ] || $P data tokenize --data "$H/data_$c" --tokenizer "$H/tok" --out "$H/shards_$c" --quiet; done
[ -d "$H/shards_related" ] || $P data tokenize --data "$H/data_natural" --tokenizer "$H/tok" --out "$H/shards_related" --quiet --order related --seed 0
for s in shakespeare chitchat; do [ -d "$H/heldout/$s" ] || $P data tokenize --data "$H/val_$s" --tokenizer "$H/tok" --out "$H/heldout/$s" --quiet; done
for SEED in $SEEDS; do
  for c in natural doremi hand related; do
    o="$H/base_${c}_s$SEED"
    [ -f "$o/eval.json" ] && continue
    log "pretrain $c seed $SEED"
    $P pretrain --shards "$H/shards_$c" --tokenizer "$H/tok" --out "$o" --preset tiny --steps 200 \
      --optimizer muon --lr 3e-3 --muon-lr 0.02 --muon-weight-decay 0 --schedule wsd --decay-frac 0.4 \
      --min-lr-ratio 0 --warmup 15 --dropout 0.1 --seed "$SEED" --eval-every None \
      --sample-every None --save-every None --log-every 50
    $P eval --from "$o" --tokenizer "$H/tok" --tasks bpb --shards "$H/heldout/shakespeare" "$H/heldout/chitchat" \
      --bpb-tokens 32768 --bpb-window 256 --dtype fp32
  done
done
log done
python - "$H" <<'PY'
import json, glob, os, sys
for f in sorted(glob.glob(f"{sys.argv[1]}/base_*/eval.json")):
    r = json.load(open(f))["results"]
    s, c = r["bpb/shakespeare"]["bpb"], r["bpb/chitchat"]["bpb"]
    print(f"{os.path.basename(os.path.dirname(f)):24s} shakespeare {s:.4f} chitchat {c:.4f} mean {(s + c) / 2:.4f} worst {max(s, c):.4f}")
PY

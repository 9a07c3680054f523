#!/usr/bin/env bash
# Issue "Speed records": every figure it asks for, on the machine this runs on, in one command (~30 minutes):
#   1. tinyshakespeare in 300 s of training: our preset x 3 (median) and nanoGPT's CPU recipe given the same 300 s;
#   2. decode at batch 1 against transformers: the tiny preset (fp32), SmolLM2-135M-Instruct in fp32 and with
#      --int8-decode (prompts in bf16 where the CPU multiplies bf16 natively), with the memory-bandwidth limit;
#   3. llama.cpp on the same weights, when llama-cpp-python is installed: f32 against our fp32, q8_0 against our
#      int8 (a build with AMX died on q8_0 on the Intel VM; docs/benchmarks.md says how to build one without).
# SmolLM2 rows need its folder (`gptlab model get smollm2-135m-instruct --run smol` gives runs/smol/base):
#   SMOL=runs/smol/base DATA=path/to/tinyshakespeare.txt bash benchmarks/speed_records.sh
# (DATA defaults to bench_quality.py's: ../shared/data/tinyshakespeare.txt beside the repository.)
# Results: benchmarks/results/speed_records/<date>_<cpu>/, then a summary table. Run it alone: a side job beside a
# 2-thread torch job oversubscribes the 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOL="${SMOL:-runs/smol/base}"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1 | tr -cs 'A-Za-z0-9' '_' | cut -c1-40)
OUT="${OUT:-benchmarks/results/speed_records/$(date -u +%Y%m%d_%H%M)_${cpu}}"
mkdir -p "$OUT"
log() { echo "[$(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" | tee -a "$OUT/log.txt"; }
lscpu > "$OUT/lscpu.txt"
log "quality: 3 x 300 s of our preset, and nanoGPT's CPU recipe for 300 s"
python benchmarks/bench_quality.py --repeats 3 --baseline nanogpt-cpu-5min --out "$OUT/quality.json" ${DATA:+--data "$DATA"}
log "decode: tiny preset, fp32"
python benchmarks/bench_decode.py --random --repeats 7 --batch-sizes 1 --out "$OUT/decode_tiny.json"
if [ -f "$SMOL/model.safetensors" ]; then
  for i in 1 2 3; do
    log "decode: SmolLM2, int8 steps, round $i"
    python benchmarks/bench_decode.py --from "$SMOL" --repeats 5 --new-tokens 64 --batch-sizes 1 --int8 \
      --ours-dtype auto --out "$OUT/decode_smollm2_int8_$i.json"
  done
  log "decode: SmolLM2, fp32"
  python benchmarks/bench_decode.py --from "$SMOL" --repeats 5 --new-tokens 64 --batch-sizes 1 --out "$OUT/decode_smollm2_fp32.json"
  if python -c "import llama_cpp" 2>/dev/null; then
    log "decode: SmolLM2 fp32 against llama.cpp f32"
    python benchmarks/bench_llamacpp.py --from "$SMOL" --repeats 7 --out "$OUT/llamacpp.json" || log "llama.cpp failed"
    log "decode: SmolLM2 int8 against llama.cpp q8_0"
    python benchmarks/bench_llamacpp.py --from "$SMOL" --repeats 7 --gguf-type q8_0 --int8 --ours-dtype auto \
      --out "$OUT/llamacpp_q8_0.json" || log "llama.cpp q8_0 failed"
  fi
else
  log "no $SMOL/model.safetensors: SmolLM2 rows skipped"
fi
log "done"
python - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
q = json.loads((out / "quality.json").read_text())[-1]
print(f"results in {out}")
for r in q["results"]:
    print(f"{r['recipe']}: val {r['val_nats_per_char']:.4f} nats/char, {r['steps']} steps, {r['tokens_seen']:,} tokens")
print(f"ours median {q.get('ours_median')}, ratios {q.get('ratios')}")
for f in sorted(out.glob("decode_*.json")):
    d = json.loads(f.read_text())
    r = d["results"][0]
    print(f"{f.name}: {r['ratio_tokens_per_s']:.2f}x transformers ({r['ours']['tokens_per_s']} vs {r['hf']['tokens_per_s']} tok/s), "
          f"read limit {d['bandwidth']['batch1_limit_tokens_per_s_read']} tok/s")
for f in sorted(out.glob("llamacpp*.json")):
    r = json.loads(f.read_text())[-1]["result"]
    print(f"{f.name}: {r['ratio_tokens_per_s']:.2f}x llama.cpp ({r['ours']['tokens_per_s']} vs {r['llama.cpp']['tokens_per_s']} tok/s)")
ints = [json.loads(f.read_text())["results"][0]["ratio_tokens_per_s"] for f in sorted(out.glob("decode_smollm2_int8_*.json"))]
if ints:
    print(f"SmolLM2 int8, median of {len(ints)} rounds: {statistics.median(ints):.2f}x")
PY

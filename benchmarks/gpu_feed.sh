#!/usr/bin/env bash
# Run on a GPU machine from the repository root, with a built dataset at $1 (default bench-data/gpu)
# and, where the machine lacks them, the reader's wheels in .wheels/.
set -euo pipefail
DATA="${1:-bench-data/gpu}"
OUT_DIR="${OUT:-/tmp/gpu-feed}"
mkdir -p "$OUT_DIR"
if ls .wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-deps --no-index .wheels/*.whl
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
for w in 4 2; do
  python3 benchmarks/gpu_feed.py "$DATA" --workers "$w" --steps 60 --warmup 10 | tee "$OUT_DIR/feed_w$w.txt"
done

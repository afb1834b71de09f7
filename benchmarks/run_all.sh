#!/usr/bin/env bash
# Run every benchmark and print their tables (not part of CI).
#
#   bash benchmarks/run_all.sh            # build (~8-10 min on 2 cores) then reader
#   bash benchmarks/run_all.sh --quick    # fewer repeats, one case size, a smaller pipeline cohort
#
# Needs the main environment (scripts/setup.sh) and builds the benchmark-only environment
# (benchmarks/setup_bench.sh) on first use. Full logs and JSON go to $BENCH_OUT
# (default /tmp/hcc-shards-bench-results); inputs are kept in /tmp between runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${HCC_SHARDS_HOME:-$HOME/.cache/hcc-shards}/envs/main/bin/python"
OUT="${BENCH_OUT:-/tmp/hcc-shards-bench-results}"
mkdir -p "$OUT"
cd "$ROOT"

BUILD_ARGS=()
READER_ARGS=(--cases 4 --patches 100)
if [ "${1:-}" = "--quick" ]; then
  BUILD_ARGS=(--slices 90 --repeats 2 --nnunet-repeats 1 --iso-spacing "" --pipeline-cases 8)
  READER_ARGS=(--cases 2 --patches 50 --skip emulator,workers)
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "$(free -g | awk '/Mem:/ {print $2}') GiB; $(uptime | sed 's/.*load/load/')"
bash benchmarks/setup_bench.sh >/dev/null

echo "== build benchmark (benchmarks/build_bench.py ${BUILD_ARGS[*]})"
"$PY" benchmarks/build_bench.py --json "$OUT/build.json" "${BUILD_ARGS[@]}" | tee "$OUT/build.txt"

if [ -f benchmarks/reader_bench.py ]; then
  echo "== reader benchmark (benchmarks/reader_bench.py ${READER_ARGS[*]})"
  "$PY" benchmarks/reader_bench.py "${READER_ARGS[@]}" 2>"$OUT/reader.log" | tee "$OUT/reader.txt"
fi

echo
echo "== tables ($(uptime | sed 's/.*load/load/'))"
sed -n '/^metric /,$p' "$OUT/build.txt"
[ -f "$OUT/reader.txt" ] && sed -n '/^cases: /,$p' "$OUT/reader.txt"
echo "logs and JSON: $OUT"

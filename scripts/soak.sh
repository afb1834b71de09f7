#!/usr/bin/env bash
# The reliability soak: the heavy sweeps kept out of CI (tests marked "soak"), then the CI part of
# tests/reliability once more. Takes about 15-30 minutes on 2 cores and a few GiB of memory.
#   bash scripts/soak.sh                 # everything
#   bash scripts/soak.sh -k corruption   # extra arguments go to pytest
# Each test prints its measurements (kills, failures absorbed, peak memory); they are in the log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ENVS="${HCC_SHARDS_HOME:-$HOME/.cache/hcc-shards}/envs"
PY="$ENVS/main/bin/python"
if [ ! -x "$PY" ]; then
    bash scripts/setup.sh main
fi
LOG="${SOAK_LOG:-soak-$(date -u +%Y%m%dT%H%M%SZ).log}"
echo "soak log: $LOG"
"$PY" -m pytest -q -s -p no:cacheprovider -m soak tests/reliability "$@" 2>&1 | tee "$LOG"
"$PY" -m pytest -q -p no:cacheprovider -m "not soak" tests/reliability "$@" 2>&1 | tee -a "$LOG"

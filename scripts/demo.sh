#!/usr/bin/env bash
# Set up the main environment, then run the end-to-end demo on a small synthetic cohort.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh main
ENVS="${HCC_SHARDS_HOME:-$HOME/.cache/hcc-shards}/envs"
exec "$ENVS/main/bin/hcc-shards" demo "${1:-demo}"

#!/usr/bin/env bash
# Benchmark-only environment with python-blosc2 (nnU-Net's storage), kept out of the product locks.
# Used by benchmarks/reader_bench.py for the nnU-Net-style baseline; not needed by CI.
set -euo pipefail
ENV_HOME="${HCC_SHARDS_HOME:-$HOME/.cache/hcc-shards}/envs"
VENV="$ENV_HOME/bench"
PY="$(command -v "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.12.1/bin/python3.12" || command -v python3.12)"
if [ ! -f "$VENV/.ready" ]; then
  rm -rf "$VENV"
  uv venv -q -p "$PY" "$VENV"
  VIRTUAL_ENV="$VENV" uv pip install -q "blosc2==4.14.1" "numpy==2.4.*"
  touch "$VENV/.ready"
fi
echo "$VENV/bin/python"

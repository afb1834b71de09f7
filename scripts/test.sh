#!/usr/bin/env bash
# Set up everything, then run the whole test suite: lint, the main environment's tests,
# and the thin reader environment's tests. Extra arguments go to the main pytest run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh all
ENVS="${HCC_SHARDS_HOME:-$HOME/.cache/hcc-shards}/envs"
export PATH="$ENVS/main/bin:$PATH"
# The Java >= 17 that setup.sh found or installed, for the Spark engine's tests.
export JAVA_HOME="$(readlink -f "$ENVS/java")"

"$ENVS/main/bin/ruff" check .
"$ENVS/main/bin/ruff" format --check .

# Reader-only interpreter: Python 3.11, torch, no build stack.
"$ENVS/reader/bin/python" -m pytest -q -m reader_env -p no:cacheprovider tests/read

# Infrastructure checks (terraform fmt, checkov, our HCL rules) in their own environment.
"$ENVS/iac/bin/python" -m pytest -q -m infra -p no:cacheprovider --confcutdir=tests/infra tests/infra

# nnU-Net's own integrity check on an export (nnunetv2 lives in its own environment).
HCC_SHARDS_NNUNET_ENV="$ENVS/nnunet" "$ENVS/main/bin/python" -m pytest -q -m nnunet -p no:cacheprovider tests/export

"$ENVS/main/bin/python" -m pytest -q -m "not soak and not reader_env and not infra and not nnunet" -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Benchmark-only environment, kept out of the product locks and not needed by CI:
#   - python-blosc2 (nnU-Net's storage), for benchmarks/reader_bench.py's nnU-Net-style baseline;
#   - MONAI and nibabel, for reader_bench.py's .nii.gz + RandCropByPosNegLabeld baseline;
#   - nnunetv2 with the CPU torch wheel, SimpleITK and pydicom, for benchmarks/build_bench.py's
#     nnU-Net preprocessing path (benchmarks/nnunet_path.py runs inside this environment).
# Python 3.11, because the CPU torch wheel exists for it. Prints the interpreter's path.
# The environment is built under envs/bench-<key> and envs/bench points at it, so a rebuild with
# other pins never disturbs a benchmark that is running.
set -euo pipefail
ENV_HOME="${HCC_SHARDS_HOME:-$HOME/.cache/hcc-shards}/envs"
TORCH_VERSION="2.13.0"
PINS=("torch==$TORCH_VERSION" "nnunetv2==2.8.1" "blosc2==4.14.1" "simpleitk==2.5.7" "pydicom==3.0.2"
      "numpy==2.4.*" "monai==1.6.1" "nibabel==5.4.2")
KEY="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
VENV="$ENV_HOME/bench-$KEY"
PY="$(command -v "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.11.7/bin/python3.11" || command -v python3.11)"
mkdir -p "$ENV_HOME"
# One builder at a time: two benchmarks started together must not delete each other's half-built env.
exec 9>"$ENV_HOME/.bench.lock"
flock 9
if [ ! -f "$VENV/.ready" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  # torch first and alone: pip takes the CPU wheel from the local wheel folder (PIP_FIND_LINKS).
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[0]}" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
  touch "$VENV/.ready"
fi
LINK="$ENV_HOME/bench"
if [ "$(readlink "$LINK" 2>/dev/null)" != "$VENV" ]; then
  # An older layout kept a plain directory here; move it aside instead of deleting it in use.
  if [ -d "$LINK" ] && [ ! -L "$LINK" ]; then
    mv "$LINK" "$LINK.old.$$"
  fi
  ln -sfn "$VENV" "$LINK"
fi
echo "$LINK/bin/python"

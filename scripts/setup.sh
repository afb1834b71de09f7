#!/usr/bin/env bash
# Idempotent setup: system packages, then one virtual environment per lock file.
# Environments live outside the checkout, keyed by the lock file's hash, so a fresh clone
# reuses them when nothing changed and rebuilds them when a lock changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_HOME="${HCC_SHARDS_HOME:-$HOME/.cache/hcc-shards}/envs"
UV_VERSION="0.13.9"
TORCH_VERSION="2.13.0"
mkdir -p "$ENV_HOME"

log() { printf '[setup] %s\n' "$*" >&2; }

find_python() {  # find_python 3.12 -> path of a working interpreter of that minor version
  local want="$1" cand path
  local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
  for cand in "$pyenv_root/versions/$want"*/bin/"python$want" /usr/bin/"python$want" \
              /usr/local/bin/"python$want" "python$want"; do
    path="$(command -v "$cand" 2>/dev/null)" || continue
    # pyenv shims exist for every version but fail unless that version is selected.
    if "$path" -c 'import sys' >/dev/null 2>&1; then
      echo "$path"; return 0
    fi
  done
  echo "no working python$want found; install it (e.g. pyenv install $want)" >&2
  return 1
}

ensure_apt() {
  local missing=()
  command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
  command -v dcmdump >/dev/null 2>&1 || missing+=(dcmtk)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing system packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_uv() {
  # Prefer a uv on PATH; otherwise install it with pip and call it as a module, which works even
  # where the new binary is not on PATH yet (pyenv shims appear only after a rehash).
  if command -v uv >/dev/null 2>&1 && [ "$(uv --version | awk '{print $2}')" = "$UV_VERSION" ]; then
    UV=(uv); return 0
  fi
  local py; py="$(find_python 3.11 || command -v python3)"
  if [ "$("$py" -m uv --version 2>/dev/null | awk '{print $2}')" != "$UV_VERSION" ]; then
    log "installing uv $UV_VERSION"
    "$py" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
  UV=("$py" -m uv)
}

lock_key() { cat "$@" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-12; }

# Main environment: Python 3.12, because zarr >= 3.2 (coalesced partial-shard reads) needs it.
ensure_main_env() {
  local key venv
  key="$(lock_key "$ROOT/requirements/main.lock")"
  venv="$ENV_HOME/main-$key"
  if [ ! -f "$venv/.ready" ]; then
    log "building main environment $venv"
    rm -rf "$venv"
    "${UV[@]}" venv -q -p "$(find_python 3.12)" "$venv"
    # Compiled at install time: with PYTHONDONTWRITEBYTECODE set (as on our CI machine) every
    # process, Beam and Dask workers included, would otherwise recompile Beam from source (~3 s).
    "${UV[@]}" pip install -q --compile-bytecode --python "$venv/bin/python" -r "$ROOT/requirements/main.lock"
    touch "$venv/.ready"
  fi
  "${UV[@]}" pip install -q --python "$venv/bin/python" --no-deps -e "$ROOT"
  ln -sfn "$venv" "$ENV_HOME/main"
}

# Reader environment: Python 3.11 with the CPU torch wheel and only the reader's own
# dependencies; it proves the reader installs and runs without the build stack.
ensure_reader_env() {
  local key venv
  key="$(lock_key "$ROOT/requirements/reader.lock" "$ROOT/requirements/reader-frameworks.lock")"
  venv="$ENV_HOME/reader-$key"
  if [ ! -f "$venv/.ready" ]; then
    log "building reader environment $venv"
    rm -rf "$venv"
    "$(find_python 3.11)" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements/reader.lock"
    # MONAI and TorchIO for the adapter tests only, pinned beside the CPU torch installed above.
    echo "torch==$TORCH_VERSION" >"$venv/constraints.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -c "$venv/constraints.txt" \
      -r "$ROOT/requirements/reader-frameworks.lock"
    touch "$venv/.ready"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" 2>/dev/null \
    || "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT"
  ln -sfn "$venv" "$ENV_HOME/reader"
}

ensure_nnunet_env() {
  # Test-only: nnunetv2 for nnU-Net's integrity check on an export. Keyed by its .in file (no lock).
  local key venv
  key="$(lock_key "$ROOT/requirements/nnunet-test.in")"
  venv="$ENV_HOME/nnunet-$key"
  if [ ! -f "$venv/.ready" ]; then
    log "building nnU-Net test environment $venv"
    rm -rf "$venv"
    "$(find_python 3.11)" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION"
    echo "torch==$TORCH_VERSION" >"$venv/constraints.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -c "$venv/constraints.txt" \
      -r "$ROOT/requirements/nnunet-test.in"
    touch "$venv/.ready"
  fi
  ln -sfn "$venv" "$ENV_HOME/nnunet"
}

ensure_iac_env() {
  [ -f "$ROOT/requirements/iac.lock" ] || return 0
  local key venv
  key="$(lock_key "$ROOT/requirements/iac.lock")"
  venv="$ENV_HOME/iac-$key"
  if [ ! -f "$venv/.ready" ]; then
    log "building infrastructure-check environment $venv"
    rm -rf "$venv"
    "${UV[@]}" venv -q -p "$(find_python 3.12)" "$venv"
    "${UV[@]}" pip install -q --compile-bytecode --python "$venv/bin/python" -r "$ROOT/requirements/iac.lock"
    touch "$venv/.ready"
  fi
  ln -sfn "$venv" "$ENV_HOME/iac"
}

main() {
  local what="${1:-all}"
  ensure_apt
  ensure_uv
  case "$what" in
    main) ensure_main_env ;;
    all) ensure_main_env; ensure_reader_env; ensure_iac_env; ensure_nnunet_env ;;
    *) log "unknown target $what"; exit 2 ;;
  esac
}

main "$@"

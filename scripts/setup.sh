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

apt_install() {  # apt_install PACKAGE... (as root, or through sudo)
  log "installing system packages: $*"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_apt() {
  local missing=()
  command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
  command -v dcmdump >/dev/null 2>&1 || missing+=(dcmtk)
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_install "${missing[@]}"
}

# Java for the Spark engine: pyspark 4 (requirements/main.lock) runs Spark's JVM and needs Java 17+.
JAVA_MIN=17
JVM_ROOT="${JVM_ROOT:-/usr/lib/jvm}"

java_major() {  # java_major JAVA -> its major version (8 for "1.8.0_392", 17 for "17.0.15")
  local out line version
  out="$("$1" -version 2>&1)" || return 1
  line="$(grep -m1 -E 'version "[^"]+"' <<<"$out")" || return 1
  version="${line#*version \"}"; version="${version%%\"*}"
  version="${version#1.}"  # Java 8 and older report 1.N
  version="${version%%[.+_-]*}"
  [[ "$version" =~ ^[0-9]+$ ]] || return 1
  echo "$version"
}

find_java() {  # find_java -> home directory of a Java >= JAVA_MIN: JAVA_HOME, PATH, then JVM_ROOT
  local cand path major
  for cand in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java 2>/dev/null || true)" \
              "$JVM_ROOT"/*/bin/java; do
    [ -n "$cand" ] && [ -x "$cand" ] || continue
    major="$(java_major "$cand")" || continue
    [ "$major" -ge "$JAVA_MIN" ] || continue
    path="$(readlink -f "$cand")"
    echo "${path%/bin/java}"; return 0
  done
  return 1
}

ensure_java() {
  # The environment's java link names the Java the tests and `--engine spark` use (JAVA_HOME), so
  # an older java first on PATH does not matter.
  local home
  if ! home="$(find_java)"; then
    apt_install openjdk-17-jre-headless
    home="$(find_java)" || { log "no Java >= $JAVA_MIN after installing openjdk-17-jre-headless"; return 1; }
  fi
  ln -sfn "$home" "$ENV_HOME/java"
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
  ensure_java
  ensure_uv
  case "$what" in
    main) ensure_main_env ;;
    all) ensure_main_env; ensure_reader_env; ensure_iac_env; ensure_nnunet_env ;;
    *) log "unknown target $what"; exit 2 ;;
  esac
}

# Run only when executed, so that tests can source the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi

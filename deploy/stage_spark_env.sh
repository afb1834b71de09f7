#!/usr/bin/env bash
# Stage the Python environment of the Spark engine for cluster nodes that cannot reach PyPI
# (the Dataproc cluster of terraform/ has no route to the internet; EMR and others may not either).
#
#   bash deploy/stage_spark_env.sh gs://BUCKET/dataproc/spark-env     (or s3://BUCKET/PREFIX, or a folder)
#
# Writes under that URL:
#   python.tar.gz          a relocatable CPython 3.12 (python-build-standalone, fetched by uv)
#   wheels/                a wheel of every pin of requirements/main.lock except pyspark and py4j
#                          (the cluster's own Spark provides them) and of hcc-shards itself
#   requirements.txt       those pins
#   install_spark_env.sh   installs all of it on a node (the Dataproc initialization action and an
#                          EMR bootstrap action run it)
#   submit.py              the spark-submit entry point (pipelines/spark/submit.py)
#
# Run it on Linux x86_64 with internet access, uv and the cloud's CLI (gcloud or aws). Wheels
# built from source distributions link against this machine's C library: run it on a system no
# newer than the nodes (Debian 12 for Dataproc 2.2-debian12), e.g. inside python:3.12-bookworm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON_VERSION="3.12"
DEST="${1:?usage: stage_spark_env.sh gs://BUCKET/PREFIX | s3://BUCKET/PREFIX | FOLDER}"
UV="${UV:-uv}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
BUNDLE="$WORK/bundle"
mkdir -p "$BUNDLE/wheels"

UV_PYTHON_INSTALL_DIR="$WORK/python" $UV python install "$PYTHON_VERSION"
PY_HOME="$(find "$WORK/python" -mindepth 1 -maxdepth 1 -type d -name "cpython-$PYTHON_VERSION*-linux-x86_64-gnu" | head -1)"
[ -x "$PY_HOME/bin/python$PYTHON_VERSION" ] || { echo "uv installed no CPython $PYTHON_VERSION under $WORK/python" >&2; exit 1; }
tar -C "$PY_HOME" -czf "$BUNDLE/python.tar.gz" .

grep -v -E '^(pyspark|py4j)==' "$ROOT/requirements/main.lock" >"$BUNDLE/requirements.txt"
"$PY_HOME/bin/python$PYTHON_VERSION" -m pip wheel -q --disable-pip-version-check \
  --wheel-dir "$BUNDLE/wheels" -r "$BUNDLE/requirements.txt"
"$PY_HOME/bin/python$PYTHON_VERSION" -m pip wheel -q --disable-pip-version-check --no-deps \
  --wheel-dir "$BUNDLE/wheels" "$ROOT"
cp "$ROOT/deploy/install_spark_env.sh" "$BUNDLE/"
if [ -f "$ROOT/pipelines/spark/submit.py" ]; then cp "$ROOT/pipelines/spark/submit.py" "$BUNDLE/"; fi

case "$DEST" in
  gs://*) gcloud storage cp -r "$BUNDLE/*" "${DEST%/}/" ;;
  s3://*) aws s3 cp --recursive --only-show-errors "$BUNDLE" "${DEST%/}/" ;;
  *) mkdir -p "$DEST" && cp -r "$BUNDLE"/. "$DEST/" ;;
esac
echo "staged the Spark engine's environment at $DEST" >&2

#!/usr/bin/env bash
# Install the Spark engine's Python environment on a cluster node from what
# deploy/stage_spark_env.sh staged, without network access beyond that URL:
#
#   bash install_spark_env.sh gs://BUCKET/PREFIX | s3://BUCKET/PREFIX | FOLDER
#
# Result: /opt/hcc-shards/venv/bin/python (CPython 3.12 with hcc-shards and its locked
# dependencies), the interpreter for spark.pyspark.python and spark.pyspark.driver.python.
# Idempotent: a node that has the environment already keeps it.
set -euo pipefail

SOURCE="${1:?usage: install_spark_env.sh gs://BUCKET/PREFIX | s3://BUCKET/PREFIX | FOLDER}"
# EMR runs bootstrap actions as the hadoop user; /opt needs root.
if [ "$(id -u)" -ne 0 ] && [ -z "${HCC_SHARDS_PREFIX:-}" ]; then
  exec sudo -E bash "$0" "$@"
fi
PREFIX="${HCC_SHARDS_PREFIX:-/opt/hcc-shards}"
VENV="$PREFIX/venv"

if [ -f "$VENV/.ready" ]; then
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
case "$SOURCE" in
  gs://*) gcloud storage cp -r "${SOURCE%/}/*" "$WORK/" ;;
  s3://*) aws s3 cp --recursive --only-show-errors "${SOURCE%/}/" "$WORK/" ;;
  *) cp -r "$SOURCE"/. "$WORK/" ;;
esac

rm -rf "$PREFIX/python" "$VENV"
mkdir -p "$PREFIX/python"
tar -xzf "$WORK/python.tar.gz" -C "$PREFIX/python"
"$PREFIX/python/bin/python3.12" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$WORK/wheels" \
  -r "$WORK/requirements.txt"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-index --no-deps --find-links "$WORK/wheels" \
  hcc-shards
# Fail here, at cluster creation, rather than in the first task.
"$VENV/bin/python" -c "import hcc_shards.shards, hcc_shards.dicom, zarr, pydicom, numpy"
chmod -R a+rX "$PREFIX"
touch "$VENV/.ready"

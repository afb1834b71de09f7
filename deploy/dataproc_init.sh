#!/usr/bin/env bash
# Dataproc initialization action (terraform/dataproc.tf installs it on every node), for both ways
# of running the build on the cluster (docs/RUN_ON_SPARK.md):
#
#  - the native Spark engine, when the hcc-spark-env metadata value names a bundle staged by
#    deploy/stage_spark_env.sh: its install_spark_env.sh puts CPython 3.12 with hcc-shards and its
#    locked dependencies at /opt/hcc-shards/venv (no PyPI needed: the nodes have no internet);
#  - Beam's portable runner with --environment_type=DOCKER: docker can pull from Artifact
#    Registry with the node's service account (root and yarn), the YARN user may talk to the
#    Docker daemon, and the image is pulled once here, so no job waits for it.
#
# Reads instance metadata values set by terraform: hcc-image (full image reference),
# hcc-image-host (REGION-docker.pkg.dev) and hcc-spark-env (gs:// URL, or empty).
set -euo pipefail

metadata() { /usr/share/google/get_metadata_value "attributes/$1"; }

IMAGE="$(metadata hcc-image)"
REGISTRY="$(metadata hcc-image-host)"
[ -n "$IMAGE" ] && [ -n "$REGISTRY" ] || { echo "hcc-image / hcc-image-host metadata missing" >&2; exit 1; }

gcloud auth configure-docker "$REGISTRY" --quiet
if id yarn >/dev/null 2>&1; then
  usermod -aG docker yarn
  sudo -u yarn -H gcloud auth configure-docker "$REGISTRY" --quiet
fi

SPARK_ENV="$(metadata hcc-spark-env || true)"
if [ -n "$SPARK_ENV" ]; then
  gcloud storage cp "${SPARK_ENV%/}/install_spark_env.sh" /tmp/hcc-install-spark-env.sh
  bash /tmp/hcc-install-spark-env.sh "$SPARK_ENV"
fi

for attempt in 1 2 3 4 5; do
  docker pull "$IMAGE" && exit 0
  echo "docker pull $IMAGE failed (attempt $attempt), retrying" >&2
  sleep $((attempt * 10))
done
echo "could not pull $IMAGE; check that the image was pushed and the node service account can read the repository" >&2
exit 1

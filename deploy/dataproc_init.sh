#!/usr/bin/env bash
# Dataproc initialization action (terraform/dataproc.tf installs it on every node): lets the
# Spark / Flink workers start the hcc-shards SDK harness image with --environment_type=DOCKER.
#
#  - docker can pull from Artifact Registry with the node's service account (root and yarn);
#  - the YARN user may talk to the Docker daemon;
#  - the image is pulled once here, so no job waits for it and no node needs pip.
#
# Reads two instance metadata values set by terraform: hcc-image (full image reference) and
# hcc-image-host (REGION-docker.pkg.dev).
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

for attempt in 1 2 3 4 5; do
  docker pull "$IMAGE" && exit 0
  echo "docker pull $IMAGE failed (attempt $attempt), retrying" >&2
  sleep $((attempt * 10))
done
echo "could not pull $IMAGE; check that the image was pushed and the node service account can read the repository" >&2
exit 1

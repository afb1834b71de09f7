#!/usr/bin/env bash
# Build, publish and launch the hcc-shards build on Google Cloud Dataflow.
#
#   deploy/launch.sh [--dry-run] [--from-terraform] COMMAND [ARGS]
#
# Commands
#   image                      build the worker / launcher image with Cloud Build and push it
#                              (add --docker to build and push with a local Docker engine instead)
#   template                   write the flex template spec to $HCC_TEMPLATE (gcloud flex-template build)
#   run INPUT OUTPUT [K=V...]  launch one job from the template; K=V are further template parameters
#   direct INPUT OUTPUT [FLAGS...]
#                              build the job graph on this machine and submit it with
#                              --runner DataflowRunner (workers still run the image)
#   INPUT is a gs:// prefix or object URL, several separated by commas, or @LIST: a text file
#   with one gs:// prefix or object URL per line (on gs:// for run; a local file works for direct)
#
# Settings come from the environment, or from `terraform output` of terraform/ with
# --from-terraform (values already set in the environment win):
#   HCC_PROJECT, HCC_REGION           project and region of the job
#   HCC_IMAGE                         full image reference, REGION-docker.pkg.dev/PROJECT/REPO/NAME:TAG
#   HCC_TEMPLATE                      gs:// path of the flex template spec
#   HCC_TEMP_LOCATION, HCC_STAGING_LOCATION   gs:// prefixes
#   HCC_SERVICE_ACCOUNT               worker service account email
#   HCC_SUBNETWORK                    subnet self link or regions/R/subnetworks/NAME (no public IPs)
#   HCC_MACHINE_TYPE (n2-standard-4), HCC_DISK_SIZE_GB (50), HCC_NUM_WORKERS (2),
#   HCC_MAX_WORKERS (20), HCC_KMS_KEY (optional), HCC_JOB_NAME (hcc-shards-<UTC time>),
#   HCC_TF_DIR (terraform/ of this checkout), HCC_PYTHON (python3; for direct: Python 3.12 with
#   the main environment, e.g. ~/.cache/hcc-shards/envs/main/bin/python)
#
# --dry-run prints every command instead of running it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=0
FROM_TERRAFORM=0

die() {
  printf 'launch.sh: %s\n' "$*" >&2
  exit 2
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

run_cmd() {
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# Fill HCC_* variables that are not set from the outputs of the terraform stack.
load_terraform_outputs() {
  local tf_dir="${HCC_TF_DIR:-$ROOT/terraform}" json
  command -v terraform >/dev/null 2>&1 || die "--from-terraform needs the terraform command on PATH"
  json="$(terraform -chdir="$tf_dir" output -json)" || die "terraform output failed in $tf_dir (run terraform apply first)"
  eval "$(
    printf '%s' "$json" | python3 -c '
import json, shlex, sys
outputs = {k: v.get("value") for k, v in json.load(sys.stdin).items()}
names = {
    "HCC_PROJECT": "project_id", "HCC_REGION": "region", "HCC_IMAGE": "image_uri",
    "HCC_TEMPLATE": "template_gcs_path", "HCC_TEMP_LOCATION": "temp_location",
    "HCC_STAGING_LOCATION": "staging_location", "HCC_SERVICE_ACCOUNT": "worker_service_account",
    "HCC_SUBNETWORK": "subnetwork",
}
for var, out in names.items():
    if outputs.get(out) is not None:
        print(f"[ -n \"${{{var}:-}}\" ] || {var}={shlex.quote(str(outputs[out]))}")
'
  )"
}

need() {
  local name missing=()
  for name in "$@"; do
    [ -n "${!name:-}" ] || missing+=("$name")
  done
  [ ${#missing[@]} -eq 0 ] || die "set ${missing[*]} (or pass --from-terraform after terraform apply)"
}

defaults() {
  : "${HCC_MACHINE_TYPE:=n2-standard-4}"
  : "${HCC_DISK_SIZE_GB:=50}"
  : "${HCC_NUM_WORKERS:=2}"
  : "${HCC_MAX_WORKERS:=20}"
  : "${HCC_JOB_NAME:=hcc-shards-$(date -u +%Y%m%d-%H%M%S)}"
}

check_gs() {  # check_gs WHAT VALUE
  case "$2" in
    gs://?*) ;;
    *) die "$1 must be a gs:// URL for Dataflow, got '$2'" ;;
  esac
}

# check_input MODE INPUT: INPUT is one gs:// prefix or object URL, several separated by commas,
# or @LIST entries naming list files. MODE run: the template's launcher reads the list, so it must
# be on gs://; MODE direct: this machine builds the graph, so a local list file works too.
check_input() {
  local mode="$1" entry entries
  [ -n "$2" ] || die "INPUT is empty"
  IFS=',' read -r -a entries <<<"$2"
  for entry in "${entries[@]}"; do
    case "$entry" in
      gs://?*) ;;
      @gs://?*) ;;
      @?*)
        [ "$mode" = direct ] || die "INPUT ${entry}: the template reads its list on Dataflow; upload it and pass a list file on gs://, e.g. @gs://BUCKET/series.txt"
        [ -f "${entry#@}" ] || die "INPUT ${entry}: list file not found"
        ;;
      *) die "INPUT must be a gs:// URL (or several, comma-separated, or @LIST files) for Dataflow, got '$entry'" ;;
    esac
  done
}

# absolute_lists INPUT: local @LIST paths made absolute (direct runs from the repository root).
absolute_lists() {
  local entry out="" entries
  IFS=',' read -r -a entries <<<"$1"
  for entry in "${entries[@]}"; do
    case "$entry" in
      @gs://* | @/*) ;;
      @*) entry="@$PWD/${entry#@}" ;;
    esac
    out="${out:+$out,}$entry"
  done
  printf '%s' "$out"
}

cmd_image() {
  need HCC_PROJECT HCC_REGION HCC_IMAGE
  if [ "${1:-}" = "--docker" ]; then
    run_cmd docker build -f "$ROOT/deploy/Dockerfile" -t "$HCC_IMAGE" "$ROOT"
    run_cmd docker push "$HCC_IMAGE"
  else
    run_cmd gcloud builds submit "$ROOT" \
      --project="$HCC_PROJECT" --region="$HCC_REGION" \
      --config="$ROOT/deploy/cloudbuild.yaml" --ignore-file=deploy/gcloudignore \
      --substitutions="_IMAGE=$HCC_IMAGE"
  fi
}

cmd_template() {
  need HCC_PROJECT HCC_IMAGE HCC_TEMPLATE HCC_TEMP_LOCATION HCC_STAGING_LOCATION \
    HCC_SERVICE_ACCOUNT HCC_SUBNETWORK
  check_gs HCC_TEMPLATE "$HCC_TEMPLATE"
  local args=(
    gcloud dataflow flex-template build "$HCC_TEMPLATE"
    --project="$HCC_PROJECT"
    --image="$HCC_IMAGE"
    --sdk-language=PYTHON
    --metadata-file="$ROOT/deploy/metadata.json"
    --disable-public-ips
    --subnetwork="$HCC_SUBNETWORK"
    --service-account-email="$HCC_SERVICE_ACCOUNT"
    --temp-location="$HCC_TEMP_LOCATION"
    --staging-location="$HCC_STAGING_LOCATION"
    --worker-machine-type="$HCC_MACHINE_TYPE"
    --num-workers="$HCC_NUM_WORKERS"
    --max-workers="$HCC_MAX_WORKERS"
    --additional-user-labels=app=hcc-shards
  )
  [ -z "${HCC_KMS_KEY:-}" ] || args+=(--dataflow-kms-key="$HCC_KMS_KEY")
  run_cmd "${args[@]}"
}

cmd_run() {
  [ $# -ge 2 ] || die "usage: launch.sh run INPUT OUTPUT [NAME=VALUE ...]"
  local input="$1" output="$2" kv params
  shift 2
  check_input run "$input"
  check_gs OUTPUT "$output"
  need HCC_PROJECT HCC_REGION HCC_IMAGE HCC_TEMPLATE HCC_SERVICE_ACCOUNT HCC_SUBNETWORK
  # gcloud splits list flags on commas; '^~^' switches the delimiter to '~' so values such as a
  # spacing "3,0.8,0.8" pass through unchanged.
  params="^~^input=$input~output=$output~sdk_container_image=$HCC_IMAGE"
  for kv in "$@"; do
    case "$kv" in
      input=* | output=* | sdk_container_image=*) die "INPUT and OUTPUT are the first two arguments and the image comes from HCC_IMAGE; do not pass $kv" ;;
      ?*=*) params="$params~$kv" ;;
      *) die "template parameters are NAME=VALUE, got '$kv'" ;;
    esac
  done
  local args=(
    gcloud dataflow flex-template run "$HCC_JOB_NAME"
    --project="$HCC_PROJECT"
    --region="$HCC_REGION"
    --template-file-gcs-location="$HCC_TEMPLATE"
    --parameters="$params"
    --disable-public-ips
    --subnetwork="$HCC_SUBNETWORK"
    --service-account-email="$HCC_SERVICE_ACCOUNT"
    --worker-machine-type="$HCC_MACHINE_TYPE"
    --num-workers="$HCC_NUM_WORKERS"
    --max-workers="$HCC_MAX_WORKERS"
    --additional-pipeline-options="disk_size_gb=$HCC_DISK_SIZE_GB"
  )
  [ -z "${HCC_KMS_KEY:-}" ] || args+=(--dataflow-kms-key="$HCC_KMS_KEY")
  run_cmd "${args[@]}"
}

cmd_direct() {
  [ $# -ge 2 ] || die "usage: launch.sh direct INPUT OUTPUT [PIPELINE FLAGS ...]"
  local input="$1" output="$2"
  shift 2
  check_input direct "$input"
  check_gs OUTPUT "$output"
  input="$(absolute_lists "$input")"
  need HCC_PROJECT HCC_REGION HCC_IMAGE HCC_TEMP_LOCATION HCC_STAGING_LOCATION \
    HCC_SERVICE_ACCOUNT HCC_SUBNETWORK
  local args=(
    "${HCC_PYTHON:-python3}" -m pipelines.build
    --input="$input"
    --output="$output"
    --runner=DataflowRunner
    --project="$HCC_PROJECT"
    --region="$HCC_REGION"
    --job_name="$HCC_JOB_NAME"
    --temp_location="$HCC_TEMP_LOCATION"
    --staging_location="$HCC_STAGING_LOCATION"
    --sdk_container_image="$HCC_IMAGE"
    --service_account_email="$HCC_SERVICE_ACCOUNT"
    --subnetwork="$HCC_SUBNETWORK"
    --no_use_public_ips
    --machine_type="$HCC_MACHINE_TYPE"
    --disk_size_gb="$HCC_DISK_SIZE_GB"
    --num_workers="$HCC_NUM_WORKERS"
    --max_num_workers="$HCC_MAX_WORKERS"
    --autoscaling_algorithm=THROUGHPUT_BASED
  )
  [ -z "${HCC_KMS_KEY:-}" ] || args+=(--dataflow_kms_key="$HCC_KMS_KEY")
  (cd "$ROOT" && run_cmd "${args[@]}" "$@")
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY_RUN=1; shift ;;
      --from-terraform) FROM_TERRAFORM=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *) break ;;
    esac
  done
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local command="$1"
  shift
  [ "$FROM_TERRAFORM" -eq 0 ] || load_terraform_outputs
  defaults
  case "$command" in
    image) cmd_image "$@" ;;
    template) cmd_template ;;
    run) cmd_run "$@" ;;
    direct) cmd_direct "$@" ;;
    *) die "unknown command '$command' (image, template, run, direct)" ;;
  esac
}

main "$@"

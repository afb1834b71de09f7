"""deploy/: the flex template metadata, the launch script's commands, and the image recipe."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
LAUNCH = DEPLOY / "launch.sh"

SETTINGS = {
    "HCC_PROJECT": "hcc-shards-ci",
    "HCC_REGION": "us-central1",
    "HCC_IMAGE": "us-central1-docker.pkg.dev/hcc-shards-ci/hcc-shards/hcc-shards:0.1.0",
    "HCC_TEMPLATE": "gs://hcc-shards-ci-hcc-shards-staging/templates/hcc-shards-0.1.0.json",
    "HCC_TEMP_LOCATION": "gs://hcc-shards-ci-hcc-shards-temp/temp",
    "HCC_STAGING_LOCATION": "gs://hcc-shards-ci-hcc-shards-staging/staging",
    "HCC_SERVICE_ACCOUNT": "hcc-shards-dataflow@hcc-shards-ci.iam.gserviceaccount.com",
    "HCC_SUBNETWORK": "regions/us-central1/subnetworks/hcc-shards-us-central1",
    "HCC_JOB_NAME": "hcc-shards-test",
}


def _metadata() -> dict[str, Any]:
    return json.loads((DEPLOY / "metadata.json").read_text())


def _launch(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HCC_")}
    return subprocess.run(
        ["bash", str(LAUNCH), *args], capture_output=True, text=True, timeout=60, env={**clean, **env}
    )


def _commands(stdout: str) -> list[list[str]]:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def _flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for a in argv:
        if a.startswith("--"):
            name, _, value = a.partition("=")
            out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# Flex template metadata
# ---------------------------------------------------------------------------------------------


def test_metadata_declares_input_and_output_as_required() -> None:
    params = {p["name"]: p for p in _metadata()["parameters"]}
    assert params["input"]["isOptional"] is False
    assert params["output"]["isOptional"] is False
    assert len(params) == len(_metadata()["parameters"]), "duplicate parameter names"
    for p in params.values():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", p["name"]), p["name"]
        assert p["label"] and len(p["helpText"].split()) >= 5, f"{p['name']} needs a label and help text"


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "input",
            ["gs://idc-open-data", "gs://my-mirror/hcc-tace-seg/"],
            ["s3://idc-open-data", "/data", "gs://"],
        ),
        ("output", ["gs://p-hcc-shards-dataset/hcc-tace-seg"], ["gs:/x", "file:///tmp/out"]),
        ("spacing", ["auto", "3,0.8,0.8", "2.5,0.703125,0.703125"], ["3,0.8", "a,b,c", "3 0.8 0.8"]),
        ("seed", ["0", "42"], ["-1", "x"]),
        ("limit", ["0", "10"], ["ten"]),
        ("listing_shards", ["16"], ["0", "-2"]),
        ("label_map", ["gs://b/labels.json"], ["labels.json", "gs://b/labels.yaml"]),
    ],
)
def test_metadata_regexes_accept_and_reject(name: str, good: list[str], bad: list[str]) -> None:
    [param] = [p for p in _metadata()["parameters"] if p["name"] == name]
    regexes = [re.compile(r) for r in param["regexes"]]
    for value in good:
        assert all(r.search(value) for r in regexes), f"{name}: {value!r} should be accepted"
    for value in bad:
        assert not all(r.search(value) for r in regexes), f"{name}: {value!r} should be rejected"


# ---------------------------------------------------------------------------------------------
# Launch script
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script", ["launch.sh", "dataproc_init.sh", "stage_spark_env.sh", "install_spark_env.sh"]
)
def test_scripts_are_valid_bash(script: str) -> None:
    proc = subprocess.run(["bash", "-n", str(DEPLOY / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_run_launches_the_template_privately_with_all_parameters() -> None:
    proc = _launch(
        "--dry-run", "run", "gs://mirror/hcc", "gs://out/ds", "spacing=3,0.8,0.8", "limit=5", **SETTINGS
    )
    assert proc.returncode == 0, proc.stderr
    [cmd] = _commands(proc.stdout)
    assert cmd[:5] == ["gcloud", "dataflow", "flex-template", "run", "hcc-shards-test"]
    flags = _flags(cmd)
    assert flags["--template-file-gcs-location"] == SETTINGS["HCC_TEMPLATE"]
    assert "--disable-public-ips" in flags
    assert flags["--subnetwork"] == SETTINGS["HCC_SUBNETWORK"]
    assert flags["--service-account-email"] == SETTINGS["HCC_SERVICE_ACCOUNT"]
    assert flags["--additional-pipeline-options"] == "disk_size_gb=50"
    # '^~^' makes '~' the list separator, so the commas of the spacing survive.
    params = flags["--parameters"]
    assert params.startswith("^~^")
    assert dict(kv.split("=", 1) for kv in params[3:].split("~")) == {
        "input": "gs://mirror/hcc",
        "output": "gs://out/ds",
        "sdk_container_image": SETTINGS["HCC_IMAGE"],
        "spacing": "3,0.8,0.8",
        "limit": "5",
    }


def test_direct_submits_with_dataflow_runner_and_the_image() -> None:
    proc = _launch("--dry-run", "direct", "gs://mirror/hcc", "gs://out/ds", "--limit=3", **SETTINGS)
    assert proc.returncode == 0, proc.stderr
    [cmd] = _commands(proc.stdout)
    assert cmd[1:3] == ["-m", "pipelines.build"]
    flags = _flags(cmd)
    assert flags["--runner"] == "DataflowRunner"
    assert flags["--sdk_container_image"] == SETTINGS["HCC_IMAGE"]
    assert flags["--input"] == "gs://mirror/hcc" and flags["--output"] == "gs://out/ds"
    assert "--no_use_public_ips" in flags and flags["--limit"] == "3"
    assert not {"--requirements_file", "--setup_file", "--extra_package"} & set(flags)


def test_image_builds_with_cloud_build_or_docker() -> None:
    proc = _launch("--dry-run", "image", **SETTINGS)
    [cmd] = _commands(proc.stdout)
    assert cmd[:3] == ["gcloud", "builds", "submit"]
    assert _flags(cmd)["--substitutions"] == f"_IMAGE={SETTINGS['HCC_IMAGE']}"
    assert _flags(cmd)["--config"].endswith("deploy/cloudbuild.yaml")
    proc = _launch("--dry-run", "image", "--docker", **SETTINGS)
    build, push = _commands(proc.stdout)
    assert build[:4] == ["docker", "build", "-f", str(DEPLOY / "Dockerfile")]
    assert push == ["docker", "push", SETTINGS["HCC_IMAGE"]]


def test_settings_come_from_terraform_outputs_and_the_environment_wins(tmp_path: Path) -> None:
    outputs = {
        "project_id": "hcc-shards-ci",
        "region": "us-central1",
        "image_uri": SETTINGS["HCC_IMAGE"],
        "template_gcs_path": SETTINGS["HCC_TEMPLATE"],
        "temp_location": SETTINGS["HCC_TEMP_LOCATION"],
        "staging_location": SETTINGS["HCC_STAGING_LOCATION"],
        "worker_service_account": SETTINGS["HCC_SERVICE_ACCOUNT"],
        "subnetwork": "projects/p/regions/us-central1/subnetworks/with 'quotes' and spaces",
        "dataflow_job_id": None,
    }
    stub = tmp_path / "terraform"
    stub.write_text(
        "#!/usr/bin/env bash\ncat <<'JSON'\n"
        + json.dumps({k: {"value": v} for k, v in outputs.items()})
        + "\nJSON\n"
    )
    stub.chmod(0o755)
    path = f"{tmp_path}:{os.environ['PATH']}"
    proc = _launch(
        "--dry-run",
        "--from-terraform",
        "run",
        "gs://in/x",
        "gs://out/y",
        PATH=path,
        HCC_REGION="europe-west4",
    )
    assert proc.returncode == 0, proc.stderr
    [cmd] = _commands(proc.stdout)
    flags = _flags(cmd)
    assert flags["--project"] == "hcc-shards-ci"
    assert flags["--region"] == "europe-west4"  # set in the environment: not overridden
    assert flags["--subnetwork"] == outputs["subnetwork"]
    assert flags["--template-file-gcs-location"] == SETTINGS["HCC_TEMPLATE"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["run", "gs://in", "gs://out"], {}, "set HCC_PROJECT HCC_REGION HCC_IMAGE"),
        (["run", "/local/dicom", "gs://out"], SETTINGS, "INPUT must be a gs:// URL"),
        (["run", "gs://in", "gs://out", "output=gs://x"], SETTINGS, "INPUT and OUTPUT are the first two"),
        (["run", "gs://in", "gs://out", "spacing"], SETTINGS, "template parameters are NAME=VALUE"),
        (["deploy"], SETTINGS, "unknown command 'deploy'"),
    ],
)
def test_launch_script_refuses_bad_input(args: list[str], env: dict[str, str], message: str) -> None:
    proc = _launch("--dry-run", *args, **env)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert _commands(proc.stdout) == []


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (google-cloud-cli) is not installed")
def test_gcloud_accepts_the_template_build_command(tmp_path: Path) -> None:
    proc = _launch(
        "--dry-run", "template", **SETTINGS, HCC_KMS_KEY="projects/p/locations/l/keyRings/r/cryptoKeys/k"
    )
    assert proc.returncode == 0, proc.stderr
    [cmd] = _commands(proc.stdout)
    # --print-only: gcloud parses every flag and the metadata file and prints the spec it would
    # upload, without touching the network.
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }
    out = subprocess.run(
        [*cmd, "--print-only", "--format=json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    spec = json.loads(json.loads(out.stdout))  # gcloud prints the spec as one JSON string
    assert spec["image"] == SETTINGS["HCC_IMAGE"]
    assert spec["sdkInfo"] == {"language": "PYTHON"}
    assert spec["metadata"] == _metadata()
    env_defaults = spec["defaultEnvironment"]
    assert env_defaults["ipConfiguration"] == "WORKER_IP_PRIVATE"
    assert env_defaults["serviceAccountEmail"] == SETTINGS["HCC_SERVICE_ACCOUNT"]
    assert env_defaults["subnetwork"] == SETTINGS["HCC_SUBNETWORK"]
    # terraform/dataflow.tf writes the same spec itself: it must use the same field names.
    terraform = (REPO / "terraform" / "dataflow.tf").read_text()
    for key in env_defaults:
        assert re.search(rf"\b{key}\s*=", terraform), f"terraform/dataflow.tf does not set {key}"
    for key in ("image", "sdkInfo", "metadata", "defaultEnvironment"):
        assert re.search(rf"\b{key}\s*=", terraform), f"terraform/dataflow.tf spec lacks {key}"


# ---------------------------------------------------------------------------------------------
# Image recipe
# ---------------------------------------------------------------------------------------------


def test_dockerfile_installs_everything_at_build_time() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/beam_python3\.12_sdk:\$\{BEAM_VERSION\}$", text, re.M)
    assert re.search(r"^ARG BEAM_VERSION=(\S+)$", text, re.M)
    assert "pip install --no-cache-dir --disable-pip-version-check -r requirements/main.lock" in text
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/opt/hcc-shards/flex_main.py" in text
    # Nothing that makes the launcher or the workers pip-install at run time.
    for forbidden in (
        "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE",
        "FLEX_TEMPLATE_PYTHON_SETUP_FILE",
        "requirements_file",
    ):
        assert forbidden not in text.replace("--requirements_file, --setup_file", ""), forbidden


def test_beam_version_of_the_image_matches_the_lock() -> None:
    beam = re.search(r"^ARG BEAM_VERSION=(\S+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    lock = re.search(r"^apache-beam==(\S+)$", (REPO / "requirements" / "main.lock").read_text(), re.M)
    assert beam and lock and beam.group(1) == lock.group(1)


def test_image_build_context_holds_what_the_dockerfile_copies() -> None:
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.M)
    sources = [s for line in copied for s in line.split()]
    assert sources, "no COPY lines found"
    dockerignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    gcloudignore = (DEPLOY / "gcloudignore").read_text()
    for src in sources:
        assert (REPO / src).exists() or src in ("hcc_shards", "pipelines"), f"COPY source {src} is missing"
        assert f"!{src}" in dockerignore or f"!{src}/" in dockerignore, (
            f"{src} is excluded by Dockerfile.dockerignore"
        )
        assert f"!/{src}" in gcloudignore, (
            f"{src} is not uploaded by gcloud builds submit (deploy/gcloudignore)"
        )

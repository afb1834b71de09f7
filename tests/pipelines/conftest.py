"""Fixtures of the pipeline tests: synthetic cohorts generated once per session."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from hcc_shards.quarantine import Reason
from hcc_shards.synth import CohortTruth, generate_cohort

sys.path.insert(0, str(Path(__file__).parent))

from pipeline_helpers import Cohort

PATIENTS = 8
"""Patients 1..8 of a cohort carry every quirk of the generator once (hcc_shards.synth.plan)."""
SEED = 0


def _add_bad_files(root: Path) -> dict[str, str]:
    (root / "notes.txt").write_text("acquisition notes, not DICOM\n")
    first = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (first / "empty.dcm").write_bytes(b"")
    return {
        "notes.txt": Reason.NOT_DICOM.value,
        f"{first.name}/empty.dcm": Reason.UNREADABLE.value,
    }


def _cohort(tmp_path_factory: pytest.TempPathFactory, layout: str) -> Cohort:
    root = tmp_path_factory.mktemp(f"cohort-{layout}") / "dicom"
    workers = min(2, os.cpu_count() or 1)
    truth = generate_cohort(
        str(root), patients=PATIENTS, size="small", layout=layout, seed=SEED, workers=workers
    )
    return Cohort(root=str(root), truth=truth, extra=_add_bad_files(root))


@pytest.fixture(scope="session")
def tcia_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """8 patients in the TCIA download layout, plus a text file and an empty file."""
    return _cohort(tmp_path_factory, "tcia")


@pytest.fixture(scope="session")
def idc_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """The same 8 patients (same UIDs) in the flat IDC bucket layout, plus the same bad files."""
    return _cohort(tmp_path_factory, "idc")


@pytest.fixture(scope="session")
def small_cohort(tcia_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """Patients HCC_001..HCC_003 of the TCIA cohort and the text file: input of the backend tests."""
    root = tmp_path_factory.mktemp("cohort-small") / "dicom"
    root.mkdir()
    keep = ("HCC_001", "HCC_002", "HCC_003")
    for name in keep:
        shutil.copytree(Path(tcia_cohort.root) / name, root / name)
    shutil.copy(Path(tcia_cohort.root) / "notes.txt", root / "notes.txt")
    truth = CohortTruth(
        seed=tcia_cohort.truth.seed,
        size=tcia_cohort.truth.size,
        layout=tcia_cohort.truth.layout,
        patients=tuple(p for p in tcia_cohort.truth.patients if p.patient_id in keep),
    )
    extra = {k: v for k, v in tcia_cohort.extra.items() if k == "notes.txt" or k.split("/")[0] in keep}
    return Cohort(root=str(root), truth=truth, extra=extra)

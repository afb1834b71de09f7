"""Fixtures of the reliability suite: one synthetic cohort per session, damaged copies of it, builds."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from hcc_shards.synth import CohortTruth, generate_cohort
from hcc_shards.synth.faults import CLASSIC_FAULTS, assign_faults, inject_faults

sys.path.insert(0, str(Path(__file__).parent))

from reliability_helpers import PATIENTS, SEED, SMALL, Cohorts, build


@pytest.fixture(scope="session")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> Cohorts:
    base = tmp_path_factory.mktemp("reliability")
    clean, faulted = base / "clean", base / "faulted"
    truth = generate_cohort(
        str(clean), patients=PATIENTS, size="small", seed=SEED, workers=min(2, os.cpu_count() or 1)
    )
    shutil.copytree(clean, faulted)
    faults = inject_faults(str(faulted), truth, assign_faults(truth, list(CLASSIC_FAULTS)))
    return Cohorts(str(clean), str(faulted), truth, faults)


@pytest.fixture(scope="session")
def small_cohort(cohorts: Cohorts, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("small") / "dicom"
    for pid in SMALL:
        shutil.copytree(Path(cohorts.clean) / pid, root / pid)
    return str(root)


@pytest.fixture(scope="session")
def small_truth(cohorts: Cohorts) -> CohortTruth:
    t = cohorts.truth
    return CohortTruth(t.seed, t.size, t.layout, tuple(p for p in t.patients if p.patient_id in SMALL))


@pytest.fixture(scope="session")
def small_build(small_cohort: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A clean in-process build of the small cohort (the reference of the flaky and corruption tests)."""
    out = tmp_path_factory.mktemp("small-build") / "out"
    build(small_cohort, str(out))
    return str(out)

"""One small synthetic cohort per layout, generated once for every test of hcc_shards.synth."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from hcc_shards.synth import CohortTruth, generate_cohort, load_truth

SEED = 1
PATIENTS = 8


@dataclass(frozen=True)
class Cohort:
    """A generated cohort on local disk and its truth."""

    root: Path
    truth: CohortTruth
    truth_path: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def hashes(self) -> dict[str, str]:
        """Relative path -> sha256 of every file."""
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in self.files()
        }


def _generate(tmp_path_factory: pytest.TempPathFactory, layout: str) -> Cohort:
    base = tmp_path_factory.mktemp(f"synth-{layout}")
    truth_path = base / "truth.json"
    truth = generate_cohort(
        str(base / "dicom"),
        patients=PATIENTS,
        size="small",
        layout=layout,
        seed=SEED,
        truth_url=str(truth_path),
    )
    assert load_truth(str(truth_path)) == truth
    return Cohort(root=base / "dicom", truth=truth, truth_path=truth_path)


@pytest.fixture(scope="session")
def tcia_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return _generate(tmp_path_factory, "tcia")


@pytest.fixture(scope="session")
def idc_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return _generate(tmp_path_factory, "idc")

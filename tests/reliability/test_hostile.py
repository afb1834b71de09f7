"""Hostile input: header text and values made by hand to break ids, geometry checks and the card.

One corpus holds every hostile kind of the generator's catalogue (``HOSTILE_FAULTS``), PatientIDs
that are long, non-ASCII, markup or control bytes, look-alike and colliding PatientIDs over copied
UIDs, and a junk file whose name is not valid UTF-8, next to untouched controls. ``plan`` and
``build`` run over it once each.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from reliability_helpers import Cohorts, build, read_rows, record_key, version_dir

from hcc_shards.build.dryrun import plan_records
from hcc_shards.case import CASE_ID_CHARS, CASE_ID_MAX_BYTES, make_case_id
from hcc_shards.synth.cohort import encode_dataset
from hcc_shards.synth.faults import (
    ELIGIBLE_QUIRKS,
    HOSTILE_FAULTS,
    MARKUP_LABEL,
    InjectedFault,
    assign_faults,
    inject_faults,
    plant_patient_id,
)
from hcc_shards.text import storable

LONG_ID = "é" * 135
"""135 non-ASCII letters, 270 UTF-8 bytes: made an over-long file name before."""
MARKUP_ID = "<script>alert(1)</script>|x|"
CONTROL_ID = "a\nb\r\x1bc\x00d`e`"
PLANTED = (LONG_ID, MARKUP_ID, CONTROL_ID)
JUNK_NAME = os.fsdecode(b"\xff\xfe-junk.dcm")
"""A file name that is not valid UTF-8 (Python hands it over with surrogate escapes)."""


@dataclass(frozen=True)
class Hostile:
    root: str
    faults: tuple[InjectedFault, ...]
    planted: dict[str, str]
    """Original PatientID -> the hostile one it now has."""
    controls: tuple[str, ...]
    """Untouched patients with a case."""
    clones: dict[str, str]
    """New PatientID -> the control whose files (UIDs included) it copies."""
    truth_voxels: dict[str, dict[str, int]]


def _clone_patient(root: Path, source: str, new_id: str, folder: str) -> None:
    for path in sorted((root / source).rglob("*")):
        if not path.is_file():
            continue
        ds = pydicom.dcmread(io.BytesIO(path.read_bytes()))
        ds.PatientID = new_id
        target = root / folder / path.relative_to(root / source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_dataset(ds))


@pytest.fixture(scope="module")
def hostile(cohorts: Cohorts, tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    root = tmp_path_factory.mktemp("hostile") / "dicom"
    shutil.copytree(cohorts.clean, root)
    truth = cohorts.truth
    faults = inject_faults(str(root), truth, assign_faults(truth, list(HOSTILE_FAULTS)))
    used = {f.patient_id for f in faults}
    free = [
        p.patient_id
        for p in truth.patients
        if p.quirk in ELIGIBLE_QUIRKS and p.seg_sop_instance_uid and p.patient_id not in used
    ]
    planted = dict(zip(free, PLANTED, strict=False))
    for pid, new_id in planted.items():
        plant_patient_id(str(root), truth, pid, new_id)
    controls = tuple(
        p.patient_id
        for p in truth.patients
        if p.expected_case and p.patient_id not in used and p.patient_id not in planted
    )
    # A look-alike of a control (its UIDs, its id with a space) and two ids that used to collide.
    lookalike, collide = controls[0], controls[1]
    clones = {lookalike.replace("_", " "): lookalike, "COL/X": collide, "COL_X": collide}
    for n, (new_id, source) in enumerate(clones.items()):
        _clone_patient(root, source, new_id, f"clone-{n}")
    (root / JUNK_NAME).write_bytes(b"not a DICOM file, and its name is not UTF-8\n")
    voxels = {p.patient_id: p.voxel_counts for p in truth.patients if p.expected_case}
    return Hostile(str(root), faults, planted, controls, clones, voxels)


def _expected_records(h: Hostile, stored: bool = False, resampled: bool = True) -> Counter:
    """The records of the corpus; ``resampled=False`` for ``plan``, which does not resample (it counts
    the coarse_spacing patient's case)."""
    expected = Counter((f.code, f.stage, f.path) for f in h.faults if resampled or f.stage != "resample")
    # The quarantine table stores the name's undecodable bytes as \xNN escapes (valid UTF-8).
    expected[("not_dicom", "index", storable(JUNK_NAME) if stored else JUNK_NAME)] += 1
    return expected


def test_case_ids_are_bounded_safe_and_distinct() -> None:
    for pid in (*PLANTED, "COL/X", "x" * 500, ""):
        cid = make_case_id(pid, "1.2.3", "1.2.4", 2)
        assert set(cid) <= CASE_ID_CHARS and len(cid.encode()) <= CASE_ID_MAX_BYTES, cid
    assert make_case_id("COL/X", "1.2", "1.3") != make_case_id("COL_X", "1.2", "1.3")
    assert make_case_id("CTRL 01", "1.2", "1.3") != make_case_id("CTRL_01", "1.2", "1.3")
    assert make_case_id("P", "1.2", "1.3", 1) != make_case_id("P", "1.2", "1.3", 2)
    assert make_case_id("P", "1.2", "1.3") != make_case_id("P", "1.2", "1.4")


@pytest.fixture(scope="module")
def hostile_plan(hostile: Hostile) -> list[dict]:
    return list(plan_records(hostile.root))


@pytest.fixture(scope="module")
def hostile_build(hostile: Hostile, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("hostile-build") / "out"
    mine = os.path.join(tempfile.gettempdir(), f"hcc-shards-progress-{os.getpid()}-*")
    summary = build(hostile.root, str(out))
    return summary, out, glob.glob(mine)


@pytest.mark.slow
def test_hostile_plan(hostile: Hostile, hostile_plan: list[dict]) -> None:
    records = hostile_plan
    cases = [r for r in records if r["kind"] == "case"]
    got = Counter(record_key(r, hostile.root) for r in records if r["kind"] == "quarantine")
    assert got == _expected_records(hostile, resampled=False)
    ids = [r["case_id"] for r in cases]
    assert len(ids) == len(set(ids))
    for cid in ids:
        assert set(cid) <= CASE_ID_CHARS and len(cid) <= CASE_ID_MAX_BYTES, cid
    by_patient = {r["patient_id"]: r for r in cases}
    for pid in hostile.controls:
        want = {k: v for k, v in hostile.truth_voxels[pid].items() if v}
        assert {k: v for k, v in by_patient[pid]["voxels"].items() if v} == want, pid
    for new_id in (*hostile.planted.values(), *hostile.clones):
        assert new_id in by_patient, new_id
    (summary,) = [r for r in records if r["kind"] == "summary"]
    assert summary["cases"] == len(cases)


@pytest.mark.slow
def test_hostile_plan_and_build_agree(hostile: Hostile, hostile_plan: list[dict], hostile_build) -> None:
    from plan_vs_build import assert_plan_matches_build

    _, out, _ = hostile_build
    assert assert_plan_matches_build(hostile_plan, version_dir(out), hostile.root) >= len(hostile.controls)


@pytest.mark.slow
def test_hostile_build(hostile: Hostile, hostile_build) -> None:
    summary, out, left = hostile_build
    assert left == []  # the progress folder went with the run
    v = version_dir(out)
    rows = read_rows(v / "manifest.parquet")
    quarantine = read_rows(v / "quarantine.parquet")
    assert Counter(record_key(r, hostile.root) for r in quarantine) == _expected_records(hostile, stored=True)
    assert summary.quarantined == len(quarantine)
    ids = [r["case_id"] for r in rows]
    assert len(ids) == len(set(ids))
    labelled = [c for image in os.listdir(v / "images") for c in os.listdir(v / "images" / image / "labels")]
    assert sorted(c for c in labelled if c != "zarr.json") == sorted(ids)
    patients = {r["patient_id"] for r in rows}
    assert set(hostile.controls) | set(hostile.planted.values()) | set(hostile.clones) <= patients
    # The look-alike did not replace its control: both kept, each with the control's labels.
    lookalike = next(iter(hostile.clones))
    a = next(r for r in rows if r["patient_id"] == lookalike)
    b = next(r for r in rows if r["patient_id"] == hostile.clones[lookalike])
    assert a["case_id"] != b["case_id"] and a["voxels_tumor"] == b["voxels_tumor"]
    card = (v / "DATASET.md").read_bytes()
    assert not [c for c in card if c < 0x20 and c not in (0x0A,)], "control byte in DATASET.md"
    text = card.decode()
    for raw in ("<script>", "<img", MARKUP_ID, MARKUP_LABEL, "\x1b"):
        assert raw not in text, raw
    assert "&lt;script&gt;" in text


def test_voxel_limit_holds_on_the_resampled_grid() -> None:
    from hcc_shards.config import BuildConfig
    from hcc_shards.errors import QuarantineError
    from hcc_shards.geometry import Geometry
    from hcc_shards.resample import check_target_size

    # PixelSpacing 400 mm on a small grid: few CT voxels, 15 G voxels at 1 mm; refused before any array.
    g = Geometry.from_dicom(
        shape=(10, 64, 64),
        image_orientation=(1, 0, 0, 0, 1, 0),
        first_position=(0, 0, 0),
        pixel_spacing=(400, 400),
        slice_step=2.5,
    )
    with pytest.raises(QuarantineError) as err:
        check_target_size(g, (1.0, 1.0, 1.0), BuildConfig())
    assert err.value.code == "resampled_too_large"
    assert check_target_size(g, (2.5, 400.0, 400.0), BuildConfig()).shape == (10, 64, 64)

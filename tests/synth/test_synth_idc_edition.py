"""The IDC edition: AIMI-like SEGs besides the manual one, the index's series structure, and a build
that finds every SEG as a case on its CT series with its annotation source."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import highdicom as hd
import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

from hcc_shards.annotation import SOURCE_AI, SOURCE_AI_CORRECTED, SOURCE_MANUAL
from hcc_shards.labels import LABELS
from hcc_shards.synth import CohortTruth, Quirk, generate_cohort, load_truth
from hcc_shards.synth.edition import MAX_AIMI, PROFILES, plan_idc_patient
from hcc_shards.synth.plan import SMALL_MAX_SLICES

SEED = 4
"""Patients 1-4 of seed 4 carry no_seg, rounded_positions, stacked_phases and seg_other_grid."""
PATIENTS = 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CohortTruth]:
    base = tmp_path_factory.mktemp("idc-edition")
    truth = generate_cohort(
        str(base / "dicom"),
        patients=PATIENTS,
        size="small",
        layout="idc",
        seed=SEED,
        edition="idc",
        truth_url=str(base / "truth.json"),
    )
    assert load_truth(str(base / "truth.json")) == truth
    return base / "dicom", truth


@pytest.fixture(scope="module")
def built(cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cohort built by the engine-free driver; the committed version's folder."""
    from hcc_shards.build.local import run_local
    from hcc_shards.build.plan import BuildPlan, flag_values

    root, _ = cohort
    out = tmp_path_factory.mktemp("idc-edition-build") / "out"
    run_local(BuildPlan.from_flags(flag_values(input=str(root), output=str(out))), workers=2)
    (version,) = (out / "versions").iterdir()
    return version


def _seg_files(root: Path) -> dict[str, Path]:
    """SEG SeriesInstanceUID -> its file."""
    out = {}
    for path in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality == "SEG":
            out[ds.SeriesInstanceUID] = path
    return out


def test_every_patient_has_the_manual_seg_and_up_to_six_aimi_segs(cohort) -> None:
    _, truth = cohort
    assert truth.edition == "idc"
    # The hard cases are in this cohort: AIMI SEGs without a manual one, on a stacked series, beside
    # a manual SEG on its own grid.
    assert {Quirk.NO_SEG, Quirk.STACKED_PHASES, Quirk.SEG_OTHER_GRID} <= {
        Quirk(p.quirk) for p in truth.patients
    }
    sources = Counter(s.expected_annotation_source for s in truth.segs)
    assert sources[SOURCE_AI] > 0 and sources[SOURCE_AI_CORRECTED] > 0
    for p in truth.patients:
        aimi = [s for s in p.segs if s.expected_annotation_source != SOURCE_MANUAL]
        manual = [s for s in p.segs if s.expected_annotation_source == SOURCE_MANUAL]
        assert (1 if p.quirk == Quirk.NO_SEG else 0) <= len(aimi) <= MAX_AIMI, p.patient_id
        assert len(manual) == (0 if p.quirk == Quirk.NO_SEG else 1), p.patient_id
        if manual:
            assert manual[0].seg_sop_instance_uid == p.seg_sop_instance_uid
            assert manual[0].voxels == p.voxels
        for s in aimi:
            assert s.annotated_labels == ("liver", "tumor") and set(s.voxel_counts) == {"liver", "tumor"}
            assert s.voxel_counts["liver"] > 0


def test_aimi_segs_lie_on_the_manual_segs_ct_and_on_other_series_of_its_study(cohort) -> None:
    _, truth = cohort
    on_manual, elsewhere_in_study = 0, 0
    for p in truth.patients:
        if p.ct_series_instance_uid is None:
            continue
        plan = plan_idc_patient(SEED, int(p.patient_id[4:]), "small")  # a pure function: the studies
        [study] = [s for s in plan.studies if s.study_uid == p.ct_study_instance_uid]
        in_study = {s.series_uid for s in study.series}
        for s in p.segs:
            if s.expected_annotation_source == SOURCE_MANUAL:
                continue
            if s.ct_series_instance_uid == p.ct_series_instance_uid:
                on_manual += 1
                assert s.ct_acquisition_number == p.ct_acquisition_number
            elif s.ct_series_instance_uid in in_study:
                elsewhere_in_study += 1
    assert on_manual >= 2 and elsewhere_in_study >= 2


def test_series_structure_follows_the_index(cohort) -> None:
    root, _ = cohort
    cts_per_study: Counter[int] = Counter()
    blank = 0
    for index in range(1, PATIENTS + 1):
        plan = plan_idc_patient(SEED, index, "small")
        for study in plan.studies:
            cts_per_study[len(study.series)] += 1
            for series in study.series:
                assert series.kind == "axial"
                assert 1 <= series.geometry.shape[0] <= SMALL_MAX_SLICES
                if not series.description:
                    blank += 1
                    [folder] = {p.parent for p in root.rglob("*.dcm") if _series_uid(p) == series.series_uid}
                    ds = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)
                    assert "SeriesDescription" not in ds and int(ds.SeriesNumber) >= 100
    assert set(cts_per_study) == {1, 2, 3} and blank >= 1


_UIDS: dict[Path, str] = {}


def _series_uid(path: Path) -> str:
    if path not in _UIDS:
        _UIDS[path] = pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID
    return _UIDS[path]


def test_full_size_plans_draw_slice_counts_and_segs_in_the_index_ranges() -> None:
    slices, per_patient = [], []
    for index in range(1, 41):
        plan = plan_idc_patient(7, index, "full")
        assert len(plan.studies) == 2 and all(1 <= len(s.series) <= 3 for s in plan.studies)
        slices += [s.geometry.shape[0] for study in plan.studies for s in study.series]
        per_patient.append(len(plan.aimi))
        if plan.annotated_series is not None:
            assert 40 <= plan.annotated_series.geometry.shape[0] <= 185
        for k, study in enumerate(plan.studies):
            on = [(a.series_index, a.corrected) for a in plan.aimi if a.study_index == k]
            predicted = [i for i, corrected in on if not corrected]
            assert len(predicted) == len(set(predicted)) <= len(study.series)
            assert all(i in predicted for i, corrected in on if corrected)
    assert min(slices) >= 18 and max(slices) <= 277 and max(slices) > 185
    assert min(per_patient) >= 0 and max(per_patient) <= MAX_AIMI
    # Past the fixed profiles the draws vary: not every patient has the same number of AIMI SEGs.
    assert len(set(per_patient[len(PROFILES) :])) > 1


def test_about_one_patient_in_six_has_no_aimi_seg_as_in_the_index() -> None:
    """17 of the index's 105 patients have no AIMI SEG; a NO_SEG patient always has some."""
    for seed in (0, 7):
        plans = [plan_idc_patient(seed, index, "small") for index in range(1, 106)]
        without = [p for p in plans if not p.aimi]
        assert 8 <= len(without) <= 28, (seed, len(without))
        assert all(p.seg is not None and p.index > len(PROFILES) for p in without)
        assert all(p.aimi for p in plans if p.quirk is Quirk.NO_SEG)


def test_segs_are_dcmqi_style_pass_dciodvfy_and_read_back_with_highdicom(cohort) -> None:
    root, truth = cohort
    files = _seg_files(root)
    assert set(files) == {s.seg_series_instance_uid for s in truth.segs}
    errors = {}
    for seg in truth.segs:
        path = files[seg.seg_series_instance_uid]
        ds = pydicom.dcmread(path)
        assert (ds.Manufacturer, int(ds.SeriesNumber)) == ("QIICR", 300)
        assert ds.SeriesDescription == seg.series_description
        assert ds["SegmentSequence"].is_undefined_length
        assert ds["PerFrameFunctionalGroupsSequence"].is_undefined_length
        read = hd.seg.segread(path)
        labels = tuple(s.SegmentLabel for s in ds.SegmentSequence)
        kinds = {s.SegmentAlgorithmType for s in ds.SegmentSequence}
        if seg.expected_annotation_source == SOURCE_MANUAL:
            assert labels == ("Liver", "Mass", "Portal vein", "Abdominal aorta")
        else:
            assert labels == ("Liver", "Tumor")
            assert kinds == (
                {"AUTOMATIC"} if seg.expected_annotation_source == SOURCE_AI else {"SEMIAUTOMATIC"}
            )
            assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == seg.ct_series_instance_uid
        frames = read.pixel_array.reshape(int(ds.NumberOfFrames), -1)
        assert frames.any(axis=1).all()  # empty frames omitted
        if shutil.which("dciodvfy") is not None:
            out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
            found = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
            if found:
                errors[path.name] = found
    assert errors == {}


def test_build_makes_every_seg_a_case_on_its_ct_with_its_source(cohort, built) -> None:
    _, truth = cohort
    rows = {r["seg_sop_instance_uid"]: r for r in pq.read_table(built / "manifest.parquet").to_pylist()}
    expected = {s.seg_sop_instance_uid: s for s in truth.segs if s.expected_case}
    assert sorted(rows) == sorted(expected)
    for uid, seg in expected.items():
        row = rows[uid]
        assert (row["ct_series_instance_uid"], row["ct_acquisition_number"]) == (
            seg.ct_series_instance_uid,
            seg.ct_acquisition_number,
        )
        assert row["annotation_source"] == seg.expected_annotation_source, row["warnings"]
        assert tuple(row["annotated_labels"]) == seg.annotated_labels
    got = dict(sorted(Counter(r["annotation_source"] for r in rows.values()).items()))
    assert got == truth.segs_by_source()


def test_labels_a_seg_does_not_define_are_null_and_the_others_match_the_truth(cohort, built) -> None:
    _, truth = cohort
    rows = {r["seg_sop_instance_uid"]: r for r in pq.read_table(built / "manifest.parquet").to_pylist()}
    geometry = {s.series_instance_uid: s.geometry for p in truth.patients for s in p.series}
    for seg in truth.segs:
        row = rows[seg.seg_sop_instance_uid]
        ct_voxel_ml = float(np.prod(geometry[seg.ct_series_instance_uid].spacing)) / 1000.0
        for lab in LABELS:
            if lab.name not in seg.annotated_labels:
                assert row[f"voxels_{lab.name}"] is None and row[f"volume_ml_{lab.name}"] is None
                assert row[f"source_volume_ml_{lab.name}"] is None
            else:
                count = seg.voxel_counts[lab.name]
                assert row[f"voxels_{lab.name}"] is not None
                assert row[f"source_volume_ml_{lab.name}"] == pytest.approx(count * ct_voxel_ml, rel=1e-4), (
                    seg.expected_annotation_source,
                    lab.name,
                )


def test_each_ct_image_is_stored_once(cohort, built) -> None:
    _, truth = cohort
    rows = pq.read_table(built / "manifest.parquet").to_pylist()
    stored = sorted(p.name for p in (built / "images").iterdir())
    assert stored == sorted({r["image_id"] for r in rows})
    # SEGs on one CT acquisition share its image: several SEGs per image, one image per acquisition.
    acquisitions = {
        (s.ct_series_instance_uid, s.ct_acquisition_number) for s in truth.segs if s.expected_case
    }
    assert len(stored) == len(acquisitions) < len(rows)


def test_cli_writes_the_idc_edition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hcc_shards.cli import main

    argv = [
        "synth",
        str(tmp_path / "d"),
        "--patients",
        "1",
        "--edition",
        "idc",
        "--truth",
        str(tmp_path / "t.json"),
    ]
    assert main(argv) == 0
    truth = load_truth(str(tmp_path / "t.json"))
    assert truth.edition == "idc" and len(truth.segs) >= 2
    assert f"{len(truth.segs)} SEGs (" in capsys.readouterr().out
    assert main([*argv, "--faults", "all"]) == 2

"""End to end on the synthetic cohort: cases, label volumes, quarantines, summary, resume, versions, layouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import IN_PROCESS, Cohort, build, read_table, snapshot, version_dir

from hcc_shards.config import BuildConfig

VOLUME_TOLERANCE = 0.02
"""Relative tolerance on a label's volume after resampling onto a grid at least as fine as the CT's."""
DOWNSAMPLED_TOLERANCE = 0.03
"""The same for a case resampled onto a coarser grid along some axis (e.g. 10 mm slices to 12.5 mm)."""
MIN_VOXELS = 2000
"""Labels checked against the tolerances above: in the 'small' cohort (5-6 mm voxels) a smaller
structure is a few voxels across, and one boundary layer more or less is already several percent."""
COARSE_TOLERANCE = 0.25
"""Bound for every label of at least 10 ml, whatever its voxel count: catches a wrong label or grid."""


@pytest.fixture(scope="module")
def tcia_build(tcia_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory):
    """The TCIA-layout cohort built once in this process, with a progress directory."""
    base = tmp_path_factory.mktemp("build-tcia")
    output, progress_dir = base / "out", base / "progress"
    summary = build(tcia_cohort.root, str(output), *IN_PROCESS, f"--progress_dir={progress_dir}")
    return output, summary, progress_dir


def _rows_by_seg(output: Path) -> dict[str, dict]:
    return {r["seg_sop_instance_uid"]: r for r in read_table(version_dir(output) / "manifest.parquet")}


def test_every_expected_case_is_built_from_the_right_series(tcia_cohort: Cohort, tcia_build) -> None:
    output, _, _ = tcia_build
    rows = _rows_by_seg(output)
    expected = {p.seg_sop_instance_uid: p for p in tcia_cohort.truth.patients if p.expected_case}
    assert sorted(rows) == sorted(expected), "manifest SEGs differ from the truth's expected cases"
    for uid, p in expected.items():
        row = rows[uid]
        assert (row["patient_id"], row["ct_series_instance_uid"], row["ct_acquisition_number"]) == (
            p.patient_id,
            p.ct_series_instance_uid,
            p.ct_acquisition_number,
        ), p.quirk
        assert sorted(row["qc_flags"]) == sorted(p.expected_qc_flags), p.patient_id
        marker = json.loads((version_dir(output) / "complete" / f"{row['image_id']}.json").read_text())
        assert row["case_id"] in [c["case_id"] for c in marker["cases"]]
        assert row["path"] == f"{row['image_path']}/labels/{row['case_id']}"
        assert row["annotation_source"] == "manual", row["warnings"]
        assert row["split"] in ("train", "val", "test")


def test_label_volumes_match_the_truth_after_resampling(tcia_cohort: Cohort, tcia_build) -> None:
    output, summary, _ = tcia_build
    rows = _rows_by_seg(output)
    target = np.asarray(summary.target_spacing_zyx)
    checked_tight = 0
    for p in tcia_cohort.truth.patients:
        if not p.expected_case:
            continue
        row = rows[p.seg_sop_instance_uid]
        ct_voxel_ml = float(np.prod(p.ct_geometry.spacing)) / 1000.0
        source = np.asarray(p.ct_geometry.spacing)
        same_grid = np.allclose(source, target, rtol=1e-6)
        downsampled = bool(np.any(target > source * (1 + 1e-6)))
        tolerance = DOWNSAMPLED_TOLERANCE if downsampled else VOLUME_TOLERANCE
        for name, count in p.voxels:
            if same_grid:  # no resampling happened: counts are exact
                assert row[f"voxels_{name}"] == count, (p.patient_id, name)
            truth_ml = count * ct_voxel_ml
            got_ml = row[f"volume_ml_{name}"]
            if count >= MIN_VOXELS:
                checked_tight += 1
                assert got_ml == pytest.approx(truth_ml, rel=tolerance), (p.patient_id, name, downsampled)
            if truth_ml >= 10.0:
                assert got_ml == pytest.approx(truth_ml, rel=COARSE_TOLERANCE), (p.patient_id, name)
    assert checked_tight >= 6, "too few large structures to check the volume tolerance"


def test_ct_grid_volumes_and_dataset_card_match_the_truth(tcia_cohort: Cohort, tcia_build) -> None:
    """Volumes as acquired are exact, and DATASET.md's label table (CT grid) reproduces the truth."""
    output, _, _ = tcia_build
    rows = _rows_by_seg(output)
    expected = [p for p in tcia_cohort.truth.patients if p.expected_case]
    truth_ml: dict[str, list[float]] = {}
    for p in expected:
        ct_voxel_ml = float(np.prod(p.ct_geometry.spacing)) / 1000.0
        for name, count in p.voxels:
            got = rows[p.seg_sop_instance_uid][f"source_volume_ml_{name}"]
            # The CT voxel volume comes from the fitted slice step, so rounding-level jitter moves it by ~1e-5.
            assert got == pytest.approx(count * ct_voxel_ml, rel=1e-4), (p.patient_id, name)
            if count:
                truth_ml.setdefault(name, []).append(count * ct_voxel_ml)
    card = (version_dir(output) / "DATASET.md").read_text(encoding="utf-8")
    table = card[card.index("On the CT grid") :].split("\n\n", 2)[1].splitlines()[2:]
    displays = {"liver": "liver", "tumor": "liver tumor", "portal_vein": "portal vein", "aorta": "aorta"}
    by_display = {
        cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)
    }
    for name, display in displays.items():
        cells = by_display[display]
        vols = truth_ml[name]
        assert int(cells[1]) == len(vols), name  # counts exactly
        assert cells[2] == f"{100 * len(vols) / len(expected):.0f}%", name
        got = [float(v) for v in cells[3:6]]
        want = [min(vols), float(np.median(vols)), max(vols)]
        assert got == pytest.approx(want, rel=0.02), name


def test_expected_quarantines_are_present_and_nothing_else(tcia_cohort: Cohort, tcia_build) -> None:
    output, _, _ = tcia_build
    records = read_table(version_dir(output) / "quarantine.parquet")
    # The added bad files carry no patient; generator faults name their patient and reason.
    by_file = sorted(
        (os.path.relpath(r["url"], tcia_cohort.root), r["code"]) for r in records if not r["patient_id"]
    )
    by_patient = sorted((r["patient_id"], r["code"]) for r in records if r["patient_id"])
    assert by_file == sorted(tcia_cohort.extra.items())
    assert by_patient == sorted(
        (p.patient_id, p.expected_reason) for p in tcia_cohort.truth.patients if p.expected_reason
    )


def test_summary_progress_and_dataset_json(tcia_cohort: Cohort, tcia_build) -> None:
    output, summary, progress_dir = tcia_build
    n_cases = sum(p.expected_case for p in tcia_cohort.truth.patients)
    n_files = sum(len(files) for _, _, files in os.walk(tcia_cohort.root))
    assert (summary.cases_total, summary.cases_written, summary.cases_resumed) == (n_cases, n_cases, 0)
    assert dict(summary.quarantined_by_reason) == {"not_dicom": 1, "unreadable": 1}
    assert summary.files == n_files
    # Every case reads its whole CT series and SEG; header reads come on top.
    assert summary.bytes_read > sum(p.bytes for p in tcia_cohort.truth.patients if p.expected_case) // 2
    assert summary.bytes_written > 0 and summary.committed
    assert summary.wall_seconds > 0 and summary.cases_per_minute > 0
    stored = json.loads((version_dir(output) / "dataset.json").read_text())
    assert stored["summary"]["cases_written"] == n_cases
    assert stored["counts"]["cases"] == n_cases
    assert json.loads((progress_dir / "total.json").read_text()) == {"cases": n_cases}
    assert len(os.listdir(progress_dir / "done")) == n_cases
    latest = json.loads((output / "LATEST.json").read_text())
    assert latest["path"] == f"versions/{summary.config_hash}"
    assert summary.config_hash == BuildConfig(target_spacing=summary.target_spacing_zyx).config_hash()
    # Patients without a SEG are counted, in the summary and on the card, not dropped silently.
    no_seg = [p for p in tcia_cohort.truth.patients if not p.seg_sop_instance_uid]
    assert no_seg, "the cohort should hold a CT-only patient"
    assert (summary.patients, summary.patients_without_seg) == (len(tcia_cohort.truth.patients), len(no_seg))
    assert summary.ct_series_unused >= len(no_seg) and summary.ct_series > summary.ct_series_unused
    card = (version_dir(output) / "DATASET.md").read_text()
    assert f"| patients with CT but no SEG | {len(no_seg)} |" in card


def test_second_run_writes_nothing_and_keeps_the_manifest(tcia_cohort: Cohort, tcia_build) -> None:
    output, first, _ = tcia_build
    before = snapshot(output)
    manifest = (version_dir(output) / "manifest.parquet").read_bytes()
    again = build(tcia_cohort.root, str(output), *IN_PROCESS)
    assert snapshot(output) == before, "a rerun over a finished output changed or added files"
    assert (version_dir(output) / "manifest.parquet").read_bytes() == manifest
    assert (again.cases_written, again.cases_resumed) == (0, first.cases_written)
    assert again.version_url == first.version_url and not again.committed


def test_other_config_writes_a_separate_version(tcia_cohort: Cohort, tcia_build, tmp_path: Path) -> None:
    output, first, _ = tcia_build
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    old_version = copy / "versions" / first.config_hash
    before = snapshot(old_version)
    second = build(tcia_cohort.root, str(copy), *IN_PROCESS, "--spacing=10,4,4", "--limit=2")
    assert second.config_hash != first.config_hash
    assert snapshot(old_version) == before, "building another config touched the existing version"
    new_rows = read_table(copy / "versions" / second.config_hash / "manifest.parquet")
    expected_first_two = sorted(r["case_id"] for r in read_table(old_version / "manifest.parquet"))[:2]
    assert [r["case_id"] for r in new_rows] == expected_first_two
    assert all(r["spacing_zyx"] == [10.0, 4.0, 4.0] for r in new_rows)
    assert json.loads((copy / "LATEST.json").read_text())["version"] == second.config_hash


@pytest.mark.slow
def test_idc_layout_with_worker_processes_gives_the_same_dataset(
    idc_cohort: Cohort, tcia_build, tmp_path
) -> None:
    """``python -m pipelines.build`` with its defaults (DirectRunner, one process per core) on the flat layout."""
    output, first, _ = tcia_build
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.build", f"--input={idc_cohort.root}", f"--output={out}"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = first.cases_written
    assert f"[hcc-shards] cases {n}/{n}" in proc.stderr
    assert f"{n} written, 0 already complete" in proc.stdout
    assert read_table(version_dir(out) / "manifest.parquet") == read_table(
        version_dir(output) / "manifest.parquet"
    )
    idc_records = read_table(version_dir(out) / "quarantine.parquet")
    assert sorted((os.path.relpath(r["url"], idc_cohort.root), r["code"]) for r in idc_records) == sorted(
        idc_cohort.extra.items()
    )


@pytest.mark.slow
def test_plan_and_build_agree_on_the_tcia_corpus(tcia_cohort: Cohort, tcia_build) -> None:
    from plan_vs_build import assert_plan_matches_build

    from hcc_shards.build.dryrun import plan_records

    output, _, _ = tcia_build
    records = list(plan_records(tcia_cohort.root, workers=2))
    assert assert_plan_matches_build(records, version_dir(output), tcia_cohort.root) >= len(
        [p for p in tcia_cohort.truth.patients if p.expected_case]
    )

"""Generation end to end: layouts, series structure and quirks in the headers, fsspec targets, CLI."""

from __future__ import annotations

import re
from collections import defaultdict

import fsspec
import numpy as np
import pydicom
import pytest

from hcc_shards.cli import main
from hcc_shards.synth import Quirk, generate_cohort, load_truth


@pytest.fixture(scope="module")
def headers(tcia_cohort):
    """Patient -> series UID -> list of (relative path, header)."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for path in tcia_cohort.files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[ds.PatientID][ds.SeriesInstanceUID].append((str(path.relative_to(tcia_cohort.root)), ds))
    return out


def test_tcia_paths_follow_the_download_layout(tcia_cohort, headers):
    study = r"\d{2}-\d{2}-\d{4}-NA-[^/]+-\d{5}"
    for p in tcia_cohort.truth.patients:
        for series in headers[p.patient_id].values():
            for rel, ds in series:
                number = ds.SeriesNumber
                desc = (ds.SeriesDescription or "NA").replace(":", "").replace("/", "-")
                name = "1-1.dcm" if ds.Modality == "SEG" else f"1-{ds.InstanceNumber:02d}.dcm"
                pattern = (
                    rf"{p.patient_id}/{study}/{number}\.000000-{re.escape(desc)}-\d{{5}}/{re.escape(name)}"
                )
                assert re.fullmatch(pattern, rel), rel
        dates = {ds.StudyDate for series in headers[p.patient_id].values() for _, ds in series}
        assert len(dates) == 2


def test_series_headers_carry_what_a_pipeline_needs(tcia_cohort, headers):
    for p in tcia_cohort.truth.patients:
        by_series = headers[p.patient_id]
        for st in p.series:
            files = [ds for _, ds in by_series[st.series_instance_uid]]
            assert len(files) == st.instances
            assert {ds.BodyPartExamined for ds in files} == {"ABDOMEN"}
            assert sorted(ds.InstanceNumber for ds in files) == list(range(1, st.instances + 1))
            assert {int(ds.AcquisitionNumber) for ds in files} == set(st.acquisition_numbers)
            study_for = {ds.StudyInstanceUID: ds.FrameOfReferenceUID for ds in files}
            assert len(study_for) == 1
            image_type = {tuple(ds.ImageType) for ds in files}
            expected = {
                "localizer": ("ORIGINAL", "PRIMARY", "LOCALIZER"),
                "derived": ("DERIVED", "SECONDARY", "AXIAL"),
                "axial": ("ORIGINAL", "PRIMARY", "AXIAL"),
            }[st.kind]
            assert image_type == {expected}
            if len(st.acquisition_numbers) > 1:
                positions = defaultdict(list)
                for ds in files:
                    positions[int(ds.AcquisitionNumber)].append(
                        tuple(float(v) for v in ds.ImagePositionPatient)
                    )
                first, second = (sorted(v) for v in positions.values())
                assert first == second  # stacked phases: identical positions, told apart by AcquisitionNumber
        assert sum(st.kind == "derived" for st in p.series) >= 1


def test_rounded_positions_stay_within_tolerance_of_a_regular_grid(tcia_cohort, headers):
    (p,) = tcia_cohort.truth.by_quirk(Quirk.ROUNDED_POSITIONS)
    files = [ds for _, ds in headers[p.patient_id][p.ct_series_instance_uid]]
    z = np.sort([float(ds.ImagePositionPatient[2]) for ds in files])
    steps = np.diff(z)
    assert np.ptp(steps) > 1e-4  # not an exact grid ...
    assert np.max(np.abs(steps - np.median(steps))) < 0.05  # ... but regular within tolerance
    assert (
        np.max(
            np.abs(z - p.ct_geometry.index_to_world(np.c_[np.arange(len(z)), np.zeros((len(z), 2))])[:, 2])
        )
        < 0.05
    )


def test_memory_filesystem_and_truth_url():
    truth = generate_cohort(
        "memory://synth-test/dicom",
        patients=1,
        size="small",
        layout="idc",
        seed=3,
        truth_url="memory://synth-test/truth.json",
    )
    fs = fsspec.filesystem("memory")
    files = fs.find("/synth-test/dicom")
    assert len(files) == truth.files == truth.patients[0].files
    assert sum(fs.size(f) for f in files) == truth.bytes
    assert load_truth("memory://synth-test/truth.json") == truth
    fs.rm("/synth-test", recursive=True)


def test_bad_arguments_name_expected_and_actual(tmp_path):
    with pytest.raises(ValueError, match="patients must be >= 1, got 0"):
        generate_cohort(str(tmp_path), patients=0)
    with pytest.raises(ValueError, match=r"layout must be one of \('tcia', 'idc'\), got 'nbia'"):
        generate_cohort(str(tmp_path), patients=1, layout="nbia")
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        generate_cohort(str(tmp_path), patients=1, workers=0)


def test_cli_writes_a_cohort_and_prints_a_summary(tmp_path, capsys):
    out, truth_path = tmp_path / "cohort", tmp_path / "truth.json"
    rc = main(["synth", str(out), "--patients", "1", "--seed", "2", "--truth", str(truth_path)])
    assert rc == 0
    text = capsys.readouterr().out
    truth = load_truth(str(truth_path))
    assert "HCC_001" in text and f"{truth.files} files" in text
    assert len(list(out.rglob("*.dcm"))) == truth.files


@pytest.mark.parametrize("emulator", ["s3", "gcs"])
def test_object_storage_targets(emulator, request):
    """The same patient written to an S3 or GCS emulator: the same files, byte for byte, as on disk."""
    emu = request.getfixturevalue(emulator)
    bucket = emu.make_bucket("synth-test")
    out = f"{bucket}/dicom-{emulator}"
    truth = generate_cohort(
        out,
        patients=1,
        size="small",
        layout="idc",
        seed=6,
        storage_options=emu.storage_options,
        truth_url=f"{bucket}/truth-{emulator}.json",
    )
    fs = fsspec.filesystem(emu.protocol, **emu.storage_options)
    files = fs.find(out.split("://", 1)[1])
    assert len(files) == truth.files
    assert sum(fs.size(f) for f in files) == truth.bytes
    assert load_truth(f"{bucket}/truth-{emulator}.json", emu.storage_options) == truth
    memory = generate_cohort(f"memory://synth-{emulator}", patients=1, size="small", layout="idc", seed=6)
    assert memory.patients == truth.patients
    fsspec.filesystem("memory").rm(f"/synth-{emulator}", recursive=True)

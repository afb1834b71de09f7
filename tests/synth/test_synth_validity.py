"""The generated files are valid DICOM: dciodvfy, highdicom and SimpleITK all accept them."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hcc_shards.synth import Quirk

pytestmark = pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed"
)


def _dciodvfy_errors(files: list[Path]) -> dict[str, list[str]]:
    def check(path: Path) -> tuple[str, list[str]]:
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        lines = (proc.stdout + proc.stderr).splitlines()
        return str(path), [line for line in lines if line.startswith("Error")]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {path: errs for path, errs in pool.map(check, files) if errs}


def _headers(root: Path) -> list[tuple[Path, pydicom.Dataset]]:
    return [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in sorted(root.rglob("*.dcm"))]


def test_dciodvfy_reports_no_error_on_any_file_tcia(tcia_cohort):
    files = tcia_cohort.files()
    assert len(files) == tcia_cohort.truth.files
    assert _dciodvfy_errors(files) == {}


def test_idc_layout_is_flat_holds_the_same_bytes_and_passes_dciodvfy(tcia_cohort, idc_cohort):
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    names = list(idc_cohort.hashes())
    bad = [n for n in names if not re.fullmatch(rf"{uuid}/{uuid}\.dcm", n)]
    assert bad == []
    # Only the paths differ between layouts, so the tcia dciodvfy run covers these bytes too.
    assert Counter(idc_cohort.hashes().values()) == Counter(tcia_cohort.hashes().values())
    one_per_series = {}
    for path in idc_cohort.files():
        one_per_series.setdefault(path.parent.name, path)
    assert len(one_per_series) == sum(
        len(p.series) + (p.seg_sop_instance_uid is not None) for p in idc_cohort.truth.patients
    )
    assert _dciodvfy_errors(list(one_per_series.values())) == {}


def test_highdicom_reads_every_seg_with_the_collection_segments(tcia_cohort):
    truth = tcia_cohort.truth
    seg_files = sorted(tcia_cohort.root.rglob("300.000000-Segmentation-*/*.dcm"))
    assert len(seg_files) == sum(p.seg_sop_instance_uid is not None for p in truth.patients)
    for path in seg_files:
        seg = hd.seg.segread(path)
        p = truth.patient(seg.PatientID)
        assert seg.SOPInstanceUID == p.seg_sop_instance_uid
        assert seg.SeriesInstanceUID == p.seg_series_instance_uid
        assert seg.StudyInstanceUID == p.ct_study_instance_uid
        assert (seg.SeriesNumber, seg.SeriesDescription) == (300, "Segmentation")
        assert seg.SegmentationType == "BINARY"
        assert list(seg.ImageType[:2]) == ["DERIVED", "PRIMARY"]
        labels = [s.SegmentLabel for s in seg.SegmentSequence]
        assert labels == ["Liver", "Mass", "Portal vein", "Abdominal aorta"]
        types = [
            (
                s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
                s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            )
            for s in seg.SegmentSequence
        ]
        assert types == [("SCT", "10200004"), ("SCT", "4147007"), ("SCT", "32764006"), ("SCT", "7832008")]
        # Only frames with foreground are stored.
        assert all(np.any(frame) for frame in seg.pixel_array.reshape(int(seg.NumberOfFrames), -1))
        frames = seg.PerFrameFunctionalGroupsSequence
        assert all("PlanePositionSequence" in f for f in frames)
        if p.quirk == Quirk.SEG_WITHOUT_REFERENCES:
            assert "ReferencedSeriesSequence" not in seg and "SourceImageSequence" not in seg
            assert not any("DerivationImageSequence" in f for f in frames)
            continue
        (ref,) = seg.ReferencedSeriesSequence
        assert ref.SeriesInstanceUID == p.ct_series_instance_uid
        referenced = {
            src.ReferencedSOPInstanceUID
            for f in frames
            for der in f.DerivationImageSequence
            for src in der.SourceImageSequence
        }
        ct = {
            ds.SOPInstanceUID
            for _, ds in _headers(tcia_cohort.root / p.patient_id)
            if ds.Modality == "CT"
            and ds.SeriesInstanceUID == p.ct_series_instance_uid
            and int(ds.AcquisitionNumber) == p.ct_acquisition_number
        }
        assert referenced and referenced <= ct


def test_simpleitk_reads_annotated_series_with_our_geometry(tcia_cohort):
    checked = 0
    for p in tcia_cohort.truth.patients:
        series = next((s for s in p.series if s.series_instance_uid == p.ct_series_instance_uid), None)
        if series is None or len(series.acquisition_numbers) > 1:
            continue
        folder = next(
            f.parent
            for f in tcia_cohort.root.glob(f"{p.patient_id}/*/*/*.dcm")
            if pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID == series.series_instance_uid
        )
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        image = reader.Execute()
        g = series.geometry
        # SimpleITK orders axes (x, y, z); our Geometry (z, y, x).
        assert image.GetSize() == g.shape[::-1]
        # Rounding jitter (quirk) moves the first position by micrometres, never more than 0.05 mm.
        atol = 0.05 if p.quirk == Quirk.ROUNDED_POSITIONS else 1e-3
        np.testing.assert_allclose(image.GetOrigin(), g.origin, atol=atol)
        np.testing.assert_allclose(image.GetSpacing(), g.spacing[::-1], atol=1e-3)
        np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), g.direction[:, ::-1], atol=1e-6)
        hu = sitk.GetArrayFromImage(image)
        assert hu.min() >= -1024 and hu.max() <= 3071 and hu.min() < -900
        checked += 1
    assert checked >= 4


def test_two_runs_give_identical_files(tcia_cohort, tmp_path):
    from hcc_shards.synth import generate_cohort

    again = generate_cohort(
        str(tmp_path / "again"), patients=2, size="small", layout="tcia", seed=1, workers=2
    )
    first = {k: v for k, v in tcia_cohort.hashes().items() if k.split("/")[0] in {"HCC_001", "HCC_002"}}
    second = {
        str(p.relative_to(tmp_path / "again")): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((tmp_path / "again").rglob("*.dcm"))
    }
    assert second == first
    assert again.patients == tcia_cohort.truth.patients[:2]


@pytest.mark.soak
def test_full_size_patient_is_valid_and_within_the_card_ranges(tmp_path):
    """One 512x512 patient (about 300 MB, tens of seconds): dciodvfy on its SEG and one slice per series."""
    from hcc_shards.synth import generate_cohort

    truth = generate_cohort(str(tmp_path), patients=2, size="full", layout="idc", seed=11)
    for p in truth.patients:
        if p.ct_geometry is None:
            continue
        assert p.ct_geometry.shape[1:] == (512, 512) and 40 <= p.ct_geometry.shape[0] <= 185
        ml = {k: v * p.ct_geometry.voxel_volume_ml for k, v in p.voxels}
        assert 300 < ml["liver"] < 3000 and 2 < ml["tumor"] < 4500, ml
        assert 1 < ml["portal_vein"] < 200 and 1 < ml["aorta"] < 140, ml
    one_per_series = {}
    for path in sorted(tmp_path.rglob("*.dcm")):
        one_per_series.setdefault(path.parent.name, path)
    assert _dciodvfy_errors(list(one_per_series.values())) == {}

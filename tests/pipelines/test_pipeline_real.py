"""The real public CT/SEG pairs of tests/data build (see tests/data/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pipeline_helpers import IN_PROCESS, build, read_table, version_dir

DATA = Path(__file__).resolve().parents[1] / "data"

# Complete pairs listed in tests/data/README.md: SEG file -> folder (or file) of the CT it annotates.
PAIRS = {
    "dcmqi/data/segmentations/liver.dcm": "dcmqi/data/segmentations/ct-3slice",
    "dcmqi/data/segmentations/partial_overlaps.dcm": "dcmqi/data/segmentations/ct-3slice",
    "dcmqi/data/segmentations/23x38x3/seg/label.seg": "dcmqi/data/segmentations/23x38x3/image",
    "dcmqi/data/segmentations/24x38x3/seg/label.seg": "dcmqi/data/segmentations/24x38x3/image",
    "dcmqi/data/segmentations/sparse-labelmap-noppv.dcm": "dcmqi/data/segmentations/24x38x3/image",
    "dcmqi/data/segmentations/sparse-labelmap-ppv5.dcm": "dcmqi/data/segmentations/24x38x3/image",
    "highdicom/data/test_files/seg_image_ct_binary.dcm": "pydicom/src/pydicom/data/test_files/dicomdirtests/77654033/CT2",
    "highdicom/data/test_files/seg_image_ct_binary_overlap.dcm": "pydicom/src/pydicom/data/test_files/dicomdirtests/77654033/CT2",
    "highdicom/data/test_files/seg_image_ct_binary_fractional.dcm": "pydicom/src/pydicom/data/test_files/dicomdirtests/77654033/CT2",
    "highdicom/data/test_files/seg_image_ct_true_fractional.dcm": "pydicom/src/pydicom/data/test_files/dicomdirtests/77654033/CT2",
    "highdicom/data/test_files/seg_image_ct_binary_single_frame.dcm": "highdicom/data/test_files/ct_image.dcm",
}
ORPHAN = "dcmqi/data/sr-example/seg.dcm"
# The public SEGs label bone, spine, tissue and artery; map them onto our classes for this test.
LABEL_MAP = {
    "codes": {
        "SCT:272673000": "tumor",
        "SCT:421060004": "aorta",
        "SCT:85756007": "liver",
        "SCT:51114001": "portal_vein",
    }
}


def _uid(path: Path, keyword: str) -> str:
    return str(getattr(pydicom.dcmread(path, stop_before_pixels=True), keyword))


@pytest.fixture(scope="module")
def real_build(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("real")
    label_map = base / "label_map.json"
    label_map.write_text(json.dumps(LABEL_MAP))
    summary = build(str(DATA), str(base / "out"), *IN_PROCESS, f"--label_map={label_map}")
    return version_dir(base / "out"), summary


def test_every_complete_pair_is_a_case_or_a_named_duplicate(real_build) -> None:
    version, summary = real_build
    rows = read_table(version / "manifest.parquet")
    records = read_table(version / "quarantine.parquet")
    by_seg = {r["seg_sop_instance_uid"]: r for r in rows}
    duplicates = {
        r["url"]: r["code"] for r in records if r["code"] in ("duplicate_seg", "duplicate_instance")
    }
    ct_series_with_case = set()
    for seg, ct in PAIRS.items():
        seg_path = DATA / seg
        uid = _uid(seg_path, "SOPInstanceUID")
        ct_path = DATA / ct
        ct_file = ct_path if ct_path.is_file() else sorted(p for p in ct_path.iterdir() if p.is_file())[0]
        ct_series = _uid(ct_file, "SeriesInstanceUID")
        if uid in by_seg:
            assert by_seg[uid]["ct_series_instance_uid"] == ct_series, seg
            ct_series_with_case.add(ct_series)
        else:
            assert str(seg_path) in duplicates, f"{seg}: neither a case nor a duplicate"
    # Every SEG is a case; its CT series is one of ct-3slice, 23x38x3, 24x38x3, CT2, ct_image, and
    # each annotated CT image is stored once, however many SEGs annotate it.
    assert len(ct_series_with_case) == 5
    assert summary.cases_written == len(rows) >= 5
    images = {r["image_id"] for r in rows}
    assert len(images) == len({(r["ct_series_instance_uid"], r["ct_acquisition_number"]) for r in rows})
    assert sorted(p.name for p in (version / "images").iterdir()) == sorted(images)


def test_real_cases_hold_their_labels(real_build) -> None:
    version, _ = real_build
    rows = {r["seg_sop_instance_uid"]: r for r in read_table(version / "manifest.parquet")}
    liver = rows[_uid(DATA / "dcmqi/data/segmentations/liver.dcm", "SOPInstanceUID")]
    assert liver["source_shape_zyx"] == [3, 512, 512]
    assert liver["voxels_liver"] > 100_000
    ct2 = next(
        r
        for r in rows.values()
        if r["source_shape_zyx"][0] == 3 and (r["voxels_tumor"] or 0) > 0 and r["warnings"]
    )
    assert any("gap" in w for w in ct2["warnings"]), ct2["warnings"]
    for row in rows.values():
        assert (version / "complete" / f"{row['image_id']}.json").exists()
        assert sum(row[f"voxels_{n}"] or 0 for n in ("liver", "tumor", "portal_vein", "aorta")) > 0
        for n in ("liver", "tumor", "portal_vein", "aorta"):  # null exactly where not annotated
            assert (row[f"voxels_{n}"] is None) == (n not in row["annotated_labels"]), (n, row["case_id"])


def test_orphan_seg_and_non_dicom_files_are_quarantined(real_build) -> None:
    version, _ = real_build
    records = read_table(version / "quarantine.parquet")
    codes = {Path(r["url"]).relative_to(DATA).as_posix(): r["code"] for r in records}
    assert codes[ORPHAN] == "seg_without_ct"
    assert codes["README.md"] == "not_dicom"
    assert codes["dcmqi/LICENSE.txt"] == "not_dicom"

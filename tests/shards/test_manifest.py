import pickle
from collections import Counter

import pytest

from hcc_shards.errors import FormatError
from hcc_shards.shards.manifest import (
    MANIFEST_COLUMNS,
    ManifestRow,
    read_manifest,
    rows_to_table,
    split_for_patient,
    write_parquet,
)

ISSUE_COLUMNS = [
    "case_id",
    "patient_id",
    "study_instance_uid",
    "ct_series_instance_uid",
    "ct_acquisition_number",
    "seg_sop_instance_uid",
    "path",
    "shape_zyx",
    "spacing_zyx",
    "origin_lps",
    "direction",
    "source_shape_zyx",
    "source_spacing_zyx",
    "voxels_liver",
    "voxels_tumor",
    "voxels_portal_vein",
    "voxels_aorta",
    "volume_ml_liver",
    "volume_ml_tumor",
    "volume_ml_portal_vein",
    "volume_ml_aorta",
    "hu_p005",
    "hu_mean",
    "hu_p995",
    "split",
    "qc_flags",
    "warnings",
    "checksum",
    "bbox_liver",
    "bbox_tumor",
    "bbox_portal_vein",
    "bbox_aorta",
]
"""The issue's fixed columns plus bounding boxes, in order."""

EXTRA_COLUMNS = [
    "source_volume_ml_liver",
    "source_volume_ml_tumor",
    "source_volume_ml_portal_vein",
    "source_volume_ml_aorta",
    "image_id",
    "image_path",
    "annotation_source",
    "segment_algorithm_type",
    "seg_series_description",
    "seg_manufacturer",
    "content_creator",
    "analysis_result_id",
    "annotated_labels",
    "seg_series_instance_uid",
    "reference_case_id",
    "dice_liver",
    "dice_tumor",
    "dice_portal_vein",
    "dice_aorta",
    "fold",
    "phases",
    "phase_confidence",
    "phase_flags",
]
"""Columns added after the fixed ones: label volumes on the CT grid as acquired, then (format 2)
the stored image and where the annotation comes from, the fold, and the phase channels."""


def make_row(case_id="HCC_001_00000001", patient="HCC_001", split="train", acq=2, **kw):
    d = {
        "case_id": case_id,
        "patient_id": patient,
        "study_instance_uid": "1.2.3",
        "ct_series_instance_uid": "1.2.3.4",
        "ct_acquisition_number": acq,
        "seg_sop_instance_uid": "1.2.3.5",
        "path": f"cases/{case_id}",
        "shape_zyx": (90, 460, 460),
        "spacing_zyx": (2.5, 0.78, 0.78),
        "origin_lps": (-180.0, -200.5, -300.25),
        "direction": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)),
        "source_shape_zyx": (45, 512, 512),
        "source_spacing_zyx": (5.0, 0.7, 0.7),
        "voxels_liver": 100,
        "voxels_tumor": 10,
        "voxels_portal_vein": 0,
        "voxels_aorta": 5,
        "volume_ml_liver": 0.15,
        "volume_ml_tumor": 0.015,
        "volume_ml_portal_vein": 0.0,
        "volume_ml_aorta": 0.0075,
        "hu_p005": -20.0,
        "hu_mean": 60.5,
        "hu_p995": 180.0,
        "split": split,
        "qc_flags": ("missing_portal_vein",),
        "warnings": (),
        "checksum": "ab" * 32,
        "bbox_liver": ((1, 2, 3), (4, 5, 6)),
        "bbox_tumor": ((1, 2, 3), (2, 3, 4)),
        "bbox_portal_vein": None,
        "bbox_aorta": ((0, 0, 0), (1, 1, 5)),
        "source_volume_ml_liver": 0.1505,
        "source_volume_ml_tumor": 0.0149,
        "source_volume_ml_portal_vein": 0.0,
        "source_volume_ml_aorta": 0.0074,
    }
    d.update(kw)
    return ManifestRow(**d)


def test_columns_are_exactly_the_contract():
    assert list(MANIFEST_COLUMNS) == ISSUE_COLUMNS + EXTRA_COLUMNS
    assert rows_to_table([make_row()]).column_names == ISSUE_COLUMNS + EXTRA_COLUMNS


def test_rows_written_before_the_phase_columns_read_as_empty_lists():
    old = make_row().to_dict()
    for name in ("phases", "phase_confidence", "phase_flags"):
        del old[name]
    row = ManifestRow.from_dict(old)
    assert (row.phases, row.phase_confidence, row.phase_flags) == ((), (), ())
    with pytest.raises(FormatError, match="missing"):
        ManifestRow.from_dict({k: v for k, v in old.items() if k != "fold"})


def test_labels_not_annotated_are_null_in_the_table():
    row = make_row(
        annotated_labels=("liver", "tumor"),
        annotation_source="ai",
        **{
            f"{p}_{n}": None
            for p in ("voxels", "volume_ml", "source_volume_ml")
            for n in ("portal_vein", "aorta")
        },
        bbox_aorta=None,
    )
    table = rows_to_table([row])
    assert table.column("voxels_portal_vein").to_pylist() == [None]
    assert table.column("volume_ml_aorta").to_pylist() == [None]
    assert table.column("annotated_labels").to_pylist() == [["liver", "tumor"]]
    back = ManifestRow.from_dict(table.to_pylist()[0])
    assert back == row and back.voxels("aorta") is None and not back.annotates("aorta")


def test_dict_and_pickle_round_trip():
    row = make_row(acq=None)
    assert ManifestRow.from_dict(row.to_dict()) == row
    assert pickle.loads(pickle.dumps(row)) == row
    with pytest.raises(FormatError, match=r"missing \['checksum'\], unexpected \['extra'\]"):
        d = row.to_dict()
        d.pop("checksum")
        d["extra"] = 1
        ManifestRow.from_dict(d)
    with pytest.raises(FormatError, match=r"split must be one of .* got 'dev'"):
        make_row(split="dev")


def test_parquet_round_trip_sorted_by_case_id():
    rows = [make_row("HCC_002_b", "HCC_002", "val"), make_row("HCC_001_a", acq=None)]
    url = "memory://manifest-test/manifest.parquet"
    write_parquet(rows_to_table(rows), url)
    back = read_manifest(url)
    assert [r.case_id for r in back] == ["HCC_001_a", "HCC_002_b"]
    assert back == sorted(rows, key=lambda r: r.case_id)
    with pytest.raises(FormatError, match="unique case_id; duplicated: \\['HCC_001_a'\\]"):
        rows_to_table([rows[1], rows[1]])


def test_split_is_deterministic_and_follows_fractions():
    patients = [f"HCC_{i:03d}" for i in range(1, 1001)]
    first = [split_for_patient(p, 7, (0.8, 0.1, 0.1)) for p in patients]
    assert first == [split_for_patient(p, 7, (0.8, 0.1, 0.1)) for p in patients]
    counts = Counter(first)
    assert 740 <= counts["train"] <= 860 and 60 <= counts["val"] <= 140 and 60 <= counts["test"] <= 140
    assert first != [split_for_patient(p, 8, (0.8, 0.1, 0.1)) for p in patients]
    assert {split_for_patient(p, 0, (0.0, 0.0, 1.0)) for p in patients[:50]} == {"test"}
    with pytest.raises(ValueError, match=r"summing to 1, got \(0.5, 0.1, 0.1\)"):
        split_for_patient("x", 0, (0.5, 0.1, 0.1))


def test_format_md_lists_the_columns_in_order():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    section = text.split("## `manifest.parquet` columns", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| column") and not line.startswith("| ---"):
            names += [n.strip() for n in line.split("|")[1].split(",")]
    assert names == ISSUE_COLUMNS + EXTRA_COLUMNS

"""commit_dataset on a small synthetic cohort: files, manifest columns, dataset.json, DATASET.md tables."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from ome_zarr_models.v05 import Image, ImageLabel
from phantoms import default_structures, make_case
from PIL import Image as PILImage
from test_manifest import EXTRA_COLUMNS, ISSUE_COLUMNS

from hcc_shards.config import BuildConfig
from hcc_shards.errors import FormatError
from hcc_shards.labels import LABELS
from hcc_shards.quarantine import QuarantineRecord
from hcc_shards.resample import resample_case
from hcc_shards.shards import (
    commit_dataset,
    read_latest,
    read_manifest,
    split_for_patient,
    version_url,
    write_case,
)
from hcc_shards.shards.writer import open_store

CONFIG = BuildConfig(
    target_spacing=(2.5, 2.5, 2.5), chunk_shape=(16, 32, 32), shard_shape=(32, 64, 64), seed=3
)
COHORT = [
    # patient, SEG uid, shape, spacing, structure scale
    ("HCC_001", "1.2.1", (24, 96, 96), (5.0, 2.0, 2.0), 0.5),
    ("HCC_002", "1.2.2", (40, 80, 80), (2.5, 2.4, 2.4), 0.55),
    ("HCC_003", "1.2.3", (20, 100, 100), (5.0, 1.8, 1.8), 0.45),
    ("HCC_003", "1.2.4", (20, 100, 100), (5.0, 1.9, 1.9), 0.5),
]
QUARANTINE = [
    QuarantineRecord("missing_slice", "slice 12 of 40 missing", "series", patient_id="HCC_004"),
    QuarantineRecord("not_dicom", "DICOMDIR", "index", url="file:///in/DICOMDIR", details=(("size", "10"),)),
]


def _text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dataset"))
    vurl = version_url(out, CONFIG)
    rows, truth = [], {}
    for patient, uid, shape, spacing, scale in COHORT:
        raw = make_case(
            shape, spacing, patient_id=patient, seg_uid=uid, structures=default_structures(scale=scale)
        )
        truth[raw.case_id] = {
            lab.name: (raw.label == lab.value).sum() * raw.geometry.voxel_volume_ml for lab in LABELS
        }
        case = resample_case(raw, CONFIG.target_spacing, CONFIG)
        split = split_for_patient(patient, CONFIG.seed, CONFIG.split_fractions)
        rows.append(write_case(case, vurl, CONFIG, split=split))
    got = commit_dataset(out, rows, QUARANTINE, CONFIG, {"name": "synthetic cohort", "files": 123})
    return out, got, rows, truth


def test_layout_and_latest(built):
    out, vurl, rows, _ = built
    assert vurl == f"{out}/versions/{CONFIG.config_hash()}"
    latest = json.loads(_text(f"{out}/LATEST.json"))
    assert latest == {
        "format_version": 2,
        "version": CONFIG.config_hash(),
        "path": f"versions/{CONFIG.config_hash()}",
    }
    assert read_latest(out) == vurl
    for name in ("manifest.parquet", "quarantine.parquet", "dataset.json", "DATASET.md", "qc/cohort.png"):
        assert os.path.getsize(f"{vurl}/{name}") > 0, name
    assert PILImage.open(f"{vurl}/qc/cohort.png").format == "PNG"
    leftovers = [f for _, _, files in os.walk(out) for f in files if f.endswith(".tmp")]
    assert leftovers == [], "atomic writes leave no temporary files"
    for r in rows:
        assert PILImage.open(f"{vurl}/qc/{r.case_id}.png").format == "PNG"
        group = zarr.open_group(open_store(f"{vurl}/{r.image_path}", read_only=True), mode="r")
        Image.from_zarr(group)
        ImageLabel.from_zarr(group[f"labels/{r.case_id}"])
        assert r.path == f"{r.image_path}/labels/{r.case_id}"


def test_manifest_columns_and_order(built):
    _, vurl, rows, _ = built
    table = pq.read_table(f"{vurl}/manifest.parquet")
    assert table.column_names == ISSUE_COLUMNS + EXTRA_COLUMNS
    assert table.column("case_id").to_pylist() == sorted(r.case_id for r in rows)
    assert read_manifest(f"{vurl}/manifest.parquet") == sorted(rows, key=lambda r: r.case_id)
    q = pq.read_table(f"{vurl}/quarantine.parquet")
    assert q.column_names == [
        "code", "message", "stage", "url", "patient_id", "study_instance_uid", "series_instance_uid",
        "sop_instance_uid", "details",
    ]  # fmt: skip
    assert sorted(q.column("code").to_pylist()) == ["missing_slice", "not_dicom"]
    assert {json.dumps({"size": "10"}), "{}"} == set(q.column("details").to_pylist())


def test_dataset_json(built):
    _, vurl, _, _ = built
    d = json.loads(_text(f"{vurl}/dataset.json"))
    assert d["format_version"] == 2 and d["config_hash"] == CONFIG.config_hash()
    assert d["target_spacing_zyx"] == [2.5, 2.5, 2.5]
    assert [lab["name"] for lab in d["labels"]] == ["liver", "tumor", "portal_vein", "aorta"]
    assert d["labels"][0]["rgba"] == [255, 0, 0, 255]
    c = d["counts"]
    assert (c["cases"], c["quarantined"], c["patients"]) == (4, 2, 3)
    assert sum(c["by_split"].values()) == 4
    assert c["quarantine_by_reason"] == {"missing_slice": 1, "not_dicom": 1}
    assert d["summary"] == {"name": "synthetic cohort", "files": 123}
    assert BuildConfig.from_dict(d["config"]).config_hash() == CONFIG.config_hash()


def _table(md: str, header: str, after: str = "") -> list[list[str]]:
    """Body rows of the first markdown table starting with ``header`` (after the text ``after``)."""
    start = md.index(header, md.index(after) if after else 0)
    lines = md[start:].splitlines()[2:]
    out = []
    for line in lines:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def _triple(cell: str) -> tuple[float, ...]:
    return tuple(float(v) for v in re.findall(r"[-\d.]+", cell))


def test_card_tables(built):
    _, vurl, rows, truth = built
    md = _text(f"{vurl}/DATASET.md")
    for grid, after_text in (("source", "On the CT grid"), ("stored", "On the stored grid")):
        labels = _table(md, "| Anatomy | Total Cases |", after=after_text)
        assert [r[0] for r in labels] == ["liver", "liver tumor", "portal vein", "aorta"]
        for lab, cells in zip(LABELS, labels, strict=True):
            present = [r for r in rows if r.voxels(lab.name)]
            vols = [r.volume_ml(lab.name, grid=grid) for r in present]
            assert int(cells[1]) == len(present) == 4
            assert cells[2] == "100%"
            got = [float(v) for v in cells[3:6]]
            np.testing.assert_allclose(got, [min(vols), np.median(vols), max(vols)], atol=0.006)
            true = [truth[r.case_id][lab.name] for r in present]
            if min(true) >= 10.0:
                np.testing.assert_allclose(got, [min(true), np.median(true), max(true)], rtol=0.02)
    before = _table(md, "| Dataset Statistics", after="### Before resampling")
    # The card lists (z, y, x), the arrays' order.
    sp = np.array([r.source_spacing_zyx for r in rows])
    sz = np.array([r.source_shape_zyx for r in rows])
    for (_, spacing, size), f in zip(before, (np.min, np.median, np.max), strict=True):
        np.testing.assert_allclose(_triple(spacing), f(sp, axis=0), atol=0.006)
        np.testing.assert_allclose(_triple(size), f(sz, axis=0), atol=0.5)
    after = _table(md, "| Dataset Statistics", after="### After resampling")
    assert [_triple(r[1]) for r in after] == [(2.5, 2.5, 2.5)] * 3
    counts = dict((r[0], r[1]) for r in _table(md, "| item | count |"))
    assert counts["cases"] == "4" and counts["patients"] == "3" and counts["quarantined"] == "2"
    assert counts["2D slices (CT grid)"] == str(sum(r.source_shape_zyx[0] for r in rows))
    assert "qc/cohort.png" in md and all(f"qc/{r.case_id}.png" in md for r in rows)


def test_commit_refuses_incomplete_cases_and_split_leaks(built, tmp_path):
    _, _, rows, _ = built
    with pytest.raises(FormatError, match=r"without a completion marker"):
        commit_dataset(str(tmp_path), rows, [], CONFIG, {})
    out, _, rows, _ = built
    same_patient = [r for r in rows if r.patient_id == "HCC_003"]
    other = "test" if same_patient[0].split != "test" else "train"
    leaked = [same_patient[0], replace(same_patient[1], split=other)]
    with pytest.raises(FormatError, match="patient HCC_003 is in splits"):
        commit_dataset(out, leaked, [], CONFIG, {})


def test_cohort_png_with_identical_spacings_after_float_round_trips():
    # One target spacing read back through JSON/parquet differs by a few ulps between cases.
    from hcc_shards.shards.qc import cohort_png

    sp = [
        (2.5, 0.78125, 0.78125),
        (2.5, 0.78125 + 1e-16, 0.78125 - 1e-16),
        (2.5000000000000004, 0.78125, 0.78125),
    ]
    png = cohort_png(sp, sp, {"liver": [1500.0, 1500.0000001], "tumor": [10.0]})
    assert png.startswith(b"\x89PNG")

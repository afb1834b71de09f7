"""DATASET.md's licence, source, Data Volume note, HU statistics, (z, y, x) axes and the file name
of each quarantine row."""

from __future__ import annotations

import json
from pathlib import Path

from phantoms import default_structures, make_case

from hcc_shards.config import BuildConfig
from hcc_shards.quarantine import QuarantineRecord
from hcc_shards.resample import resample_case
from hcc_shards.shards import commit_dataset, split_for_patient, version_url, write_case
from hcc_shards.shards.card_facts import DATA_VOLUME_NOTE, DOI, input_source, quarantine_file

CONFIG = BuildConfig(target_spacing=(5.0, 2.5, 2.5), chunk_shape=(16, 32, 32), shard_shape=(32, 64, 64))


def test_source_kind_from_the_input():
    assert input_source("/data/manifest-1643035385102/HCC-TACE-Seg")["kind"] == "TCIA download (local folder)"
    idc = input_source("s3://idc-open-data/abc/*,s3://idc-open-data/def", index_version="v21")
    assert idc["kind"].startswith("IDC") and idc["idc_index_version"] == "v21"
    assert input_source("gs://lab-bucket/hcc")["kind"] == "object store (gs://)"


def test_quarantine_file_is_the_escaped_base_name():
    assert quarantine_file("s3://b/HCC_001/1-001.dcm") == "1-001.dcm"
    assert quarantine_file("file:///in/a|b\x1b[2J.dcm") == "a\\|b\\\\x1b\\[2J.dcm"
    assert quarantine_file("") == "-"


def test_card_has_licence_source_hu_and_file_names(tmp_path):
    out = str(tmp_path)
    vurl = version_url(out, CONFIG)
    raw = make_case(
        (20, 64, 64),
        (5.0, 2.0, 2.0),
        patient_id="HCC_001",
        seg_uid="1.2.9",
        structures=default_structures(scale=0.5),
    )
    case = resample_case(raw, CONFIG.target_spacing, CONFIG)
    row = write_case(case, vurl, CONFIG, split=split_for_patient("HCC_001", CONFIG.seed))
    quarantine = [
        QuarantineRecord(
            "unreadable", "truncated", "index", url=f"file:///in/HCC_002/1-00{i}.dcm", patient_id="HCC_002"
        )
        for i in (1, 2, 3)
    ]
    source = input_source("/in")
    from hcc_shards.shards.intensity import foreground_histogram, intensity_properties
    from hcc_shards.shards.writer import stored_histogram

    hist = foreground_histogram(case.image, case.label)
    assert stored_histogram(vurl, row) == hist  # what a resumed case contributes
    intensity = intensity_properties(hist)
    commit_dataset(out, [row], quarantine, CONFIG, {"name": "t"}, source=source, intensity=intensity)
    card = Path(f"{vurl}/DATASET.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in card and DOI in card and "Moawad" in card
    assert "- Source: TCIA download (local folder)" in card
    assert DATA_VOLUME_NOTE in card
    assert "Spacing and size are (z, y, x)" in card and "(x, y, z)" not in card.split("## Resolution")[1]
    assert "| (5.00, 2.50, 2.50) |" in card  # the stored spacing, in (z, y, x)
    assert f"| mean | {row.hu_mean:.0f} | {row.hu_mean:.0f} | {row.hu_mean:.0f} |" in card
    for i in (1, 2, 3):
        assert f"| unreadable | index | HCC_002 | 1-00{i}.dcm | truncated |" in card
    stored = json.loads(Path(f"{vurl}/dataset.json").read_text())
    assert stored["source"] == source
    assert stored["foreground_intensity_properties_per_channel"] == {"0": intensity}
    assert f"| {intensity['mean']:.1f} | {intensity['std']:.1f} |" in card
    assert abs(intensity["mean"] - row.hu_mean) < 1e-9  # the same voxels as the manifest's hu_mean


def test_intensity_properties_equal_numpy_over_all_foreground_voxels():
    import numpy as np

    from hcc_shards.shards.intensity import foreground_histogram, intensity_properties, merge_histograms

    rng = np.random.default_rng(0)
    images = [rng.normal(60, 30, size=(6, 20, 20)).astype(np.int16) for _ in range(3)]
    labels = [(rng.random((6, 20, 20)) < 0.3).astype(np.uint8) * (i + 1) for i in range(3)]
    hist = merge_histograms(foreground_histogram(im, lb) for im, lb in zip(images, labels, strict=True))
    fg = np.concatenate([im[lb > 0] for im, lb in zip(images, labels, strict=True)]).astype(float)
    got = intensity_properties(hist)
    expected = {
        "max": fg.max(), "mean": fg.mean(), "median": np.median(fg), "min": fg.min(),
        "percentile_00_5": np.percentile(fg, 0.5), "percentile_99_5": np.percentile(fg, 99.5), "std": fg.std(),
    }  # fmt: skip
    assert got == {k: __import__("pytest").approx(v) for k, v in expected.items()}
    assert intensity_properties(()) is None


def test_outliers_are_named_and_figures_are_written(tmp_path):
    import numpy as np
    from PIL import Image

    from hcc_shards.shards.qc_cohort import outliers

    values = np.array([2.5] * 6 + [2.6, 2.4, 10.000304])
    assert outliers(values) == [8]
    assert outliers(np.array([1.0, 1.0, 1.0])) == []
    out = str(tmp_path)
    vurl = version_url(out, CONFIG)
    raw = make_case(
        (20, 64, 64),
        (5.0, 2.0, 2.0),
        patient_id="HCC_001",
        seg_uid="1.2.8",
        structures=default_structures(scale=0.5),
    )
    row = write_case(resample_case(raw, CONFIG.target_spacing, CONFIG), vurl, CONFIG, split="train")
    commit_dataset(out, [row], [], CONFIG, {"name": "t"})
    card = Path(f"{vurl}/DATASET.md").read_text(encoding="utf-8")
    for name in ("cases.png", "intensity.png", "tumor_sizes.png"):
        assert f"(qc/{name})" in card
        assert Image.open(f"{vurl}/qc/{name}").format == "PNG"

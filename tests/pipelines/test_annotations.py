"""Two SEGs on one CT: a manual one and an AI one (liver and tumour only), built end to end."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import zarr
from pipeline_helpers import IN_PROCESS, build, read_table, version_dir
from pydicom.sr.codedict import codes

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import decode_pairing
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import pair_patient
from hcc_shards.labels import LIVER, TUMOR
from hcc_shards.synth import generate_cohort

AI_DESCRIPTION = "AIMI liver-tumor AI segmentation"


def _ai_seg(source_paths: list[str], label: np.ndarray, out: Path) -> str:
    """A liver and tumour SEG like IDC's AIMI ones (AUTOMATIC), its liver one slice short."""
    sources = [pydicom.dcmread(p) for p in source_paths]
    liver = label == LIVER
    top = int(np.flatnonzero(liver.any(axis=(1, 2))).max())
    liver[top] = False  # an AI that misses a slice: Dice below 1
    masks = np.stack([liver, label == TUMOR], axis=-1).astype(np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="nnU-Net", version="1", family=codes.cid7162.ArtificialIntelligence
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=name,
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=prop,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for n, (name, prop) in enumerate((("Liver", codes.SCT.Liver), ("Tumor", codes.SCT.Neoplasm)), start=1)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=masks,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=hd.UID(),
            series_number=300,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="QIICR",
            manufacturer_model_name="dcmqi",
            software_versions="1",
            device_serial_number="1",
            series_description=AI_DESCRIPTION,
            omit_empty_frames=True,
        )
    out.mkdir(parents=True, exist_ok=True)
    seg.save_as(out / "ai-seg.dcm")
    return str(seg.SOPInstanceUID)


@pytest.fixture(scope="module")
def two_annotations(tmp_path_factory):
    base = tmp_path_factory.mktemp("annotations")
    cohort = base / "in"
    generate_cohort(str(cohort), patients=1, size="small", seed=3)
    headers = [index_file(str(p), None, BuildConfig()) for p in sorted(cohort.rglob("*.dcm"))]
    (pairing,), _ = pair_patient([h for h in headers if not hasattr(h, "code")], BuildConfig())
    manual = decode_pairing(pairing, BuildConfig())
    ai_uid = _ai_seg([h.url for h in pairing.ct_headers], manual.label, cohort / "ai")
    out = base / "out"
    build(str(cohort), str(out), *IN_PROCESS)
    rows = {r["seg_sop_instance_uid"]: r for r in read_table(version_dir(out) / "manifest.parquet")}
    return out, rows, pairing.seg.sop_instance_uid, ai_uid


def test_two_segs_on_one_ct_are_two_cases_on_one_stored_image(two_annotations) -> None:
    out, rows, manual_uid, ai_uid = two_annotations
    assert set(rows) == {manual_uid, ai_uid}
    manual, ai = rows[manual_uid], rows[ai_uid]
    assert manual["image_id"] == ai["image_id"]
    version = version_dir(out)
    assert [p.name for p in (version / "images").iterdir()] == [manual["image_id"]]
    labels = json.loads((version / manual["image_path"] / "labels" / "zarr.json").read_text())
    assert labels["attributes"]["ome"]["labels"] == sorted([manual["case_id"], ai["case_id"]])
    assert manual["annotation_source"] == "manual" and ai["annotation_source"] == "ai"
    assert ai["segment_algorithm_type"] == "AUTOMATIC" and ai["seg_series_description"] == AI_DESCRIPTION
    assert ai["seg_manufacturer"] == "QIICR"
    assert ai["annotated_labels"] == ["liver", "tumor"]
    assert manual["annotated_labels"] == ["liver", "tumor", "portal_vein", "aorta"]
    for name in ("portal_vein", "aorta"):  # not annotated: null, never 0
        for prefix in ("voxels", "volume_ml", "source_volume_ml", "bbox"):
            assert ai[f"{prefix}_{name}"] is None, (prefix, name)
        assert manual[f"voxels_{name}"] > 0
    assert ai["voxels_liver"] > 0 and ai["voxels_tumor"] == manual["voxels_tumor"]
    assert ai["reference_case_id"] == manual["case_id"]
    assert 0.8 < ai["dice_liver"] < 1.0 and ai["dice_tumor"] == pytest.approx(1.0)
    assert ai["dice_portal_vein"] is None and manual["reference_case_id"] == ""
    attrs = json.loads((version / ai["path"] / "zarr.json").read_text())["attributes"]["hcc_shards"]
    assert attrs["annotated_labels"] == ["liver", "tumor"] and set(attrs["foreground"]) == {"liver", "tumor"}


def test_zarr_and_xarray_open_an_image_without_warnings(two_annotations) -> None:
    out, rows, manual_uid, _ = two_annotations
    path = version_dir(out) / rows[manual_uid]["image_path"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = zarr.open_group(str(path), mode="r")
        names = sorted(name for name, _ in group.members(max_depth=None))
    assert "0" in names and any(n.endswith("foreground/aorta") for n in names)
    xr = pytest.importorskip("xarray")
    tree = xr.open_datatree(str(path), engine="zarr", consolidated=False)
    label = f"labels/{rows[manual_uid]['case_id']}/foreground"
    assert tree[label]["aorta"].dims == ("aorta_sample", "zyx")


def test_reader_filters_by_source_and_marks_labels_not_annotated(two_annotations) -> None:
    from hcc_shards.read import PatchStream, RandomPatches, open_dataset
    from hcc_shards.verify import verify_dataset

    out, rows, manual_uid, ai_uid = two_annotations
    ds = open_dataset(str(out))
    manual_only = ds.filter(annotation_source="manual")
    assert manual_only.case_ids == (rows[manual_uid]["case_id"],)
    ai_case = ds.filter(annotation_source="ai")
    assert ai_case.case(rows[ai_uid]["case_id"]).annotated_labels == ("liver", "tumor")
    # Every patch says which labels its case annotates; forcing never draws one it does not.
    weights = {"portal_vein": 1.0, "aorta": 1.0, "liver": 1e-6, "tumor": 1e-6}
    stream = PatchStream(
        ai_case, RandomPatches((16, 32, 32), 8, foreground_probability=1.0, class_weights=weights)
    )
    batch = next(stream.batches(8))
    assert batch["annotated"].tolist() == [[True, True, False, False]] * 8
    specs = [stream.spec(0, i) for i in range(32)]
    assert {s.label for s in specs} <= {"liver", "tumor"} and any(s.label for s in specs)
    both = PatchStream(ds, RandomPatches((16, 32, 32), 8), seed=1)
    by_case = {p.spec.case_id: p.annotated.tolist() for p in both}
    assert by_case[rows[manual_uid]["case_id"]] == [True] * 4
    report = verify_dataset(str(out))
    assert report.ok, report.problems


def test_card_counts_labels_by_source_and_shows_agreement(two_annotations) -> None:
    out, rows, _, ai_uid = two_annotations
    version = version_dir(out)
    md = (version / "DATASET.md").read_text(encoding="utf-8")
    assert "| annotations: manual | 1 |" in md and "| annotations: ai | 1 |" in md
    assert "| stored images | 1 |" in md
    assert "### Labels of the manual annotations (the collection's own card)" in md
    ai_section = md.split("### Labels of the ai annotations", 1)[1].split("###", 1)[0]
    # The AI annotation defines no portal vein: 0 annotations define it, none counted as absent.
    assert "| portal vein | 0 | 0 | 0% |" in ai_section
    agreement = md.split("### Agreement with the manual annotation", 1)[1]
    dice = rows[ai_uid]["dice_liver"]
    assert f"| ai | liver | 1 | {dice:.3f} |" in agreement
    assert (version / "qc" / "agreement.png").read_bytes()[:4] == b"\x89PNG"

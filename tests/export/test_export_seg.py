"""DICOM SEG export: references the CT instances, passes dciodvfy, round-trips through highdicom."""

import shutil
import subprocess
from dataclasses import replace

import highdicom as hd
import numpy as np
import pytest

from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.export.seg import export_seg
from hcc_shards.geometry import Geometry
from hcc_shards.read import open_dataset

shards = pytest.importorskip("hcc_shards.shards")

from conftest import DIRECTION, _cases  # noqa: E402

CT_SHAPE = (7, 40, 36)


@pytest.fixture(scope="module")
def seg_built(tmp_path_factory):
    """One case built from a 5 mm CT grid resampled to 2.5 mm slices, with its CT instances recorded."""
    base = _cases()[0]
    ct = Geometry.from_components(
        shape=CT_SHAPE, spacing_zyx=(5.0, 0.9, 0.8), origin_lps=(10.0, -30.0, 55.5), direction=DIRECTION
    )
    rng = np.random.default_rng(5)
    ct_label = np.zeros(CT_SHAPE, dtype=np.uint8)
    ct_label[1:6, 5:30, 4:28] = 1
    ct_label[2:4, 10:16, 8:14] = 2
    ct_label[:, 30:34, 20:24] = 4
    ct_label[5, :3, :3] = rng.integers(0, 2, size=(3, 3)) * 3
    m = (CT_SHAPE[0] - 1) * 2 + 1
    stored_label = np.repeat(ct_label, 2, axis=0)[:m]  # stored slice 2k is CT slice k
    stored = Geometry.from_components(
        shape=stored_label.shape, spacing_zyx=(2.5, 0.9, 0.8), origin_lps=ct.origin, direction=DIRECTION
    )
    image = np.full(stored.shape, 40, dtype=np.int16)
    ct_uid = base.provenance.ct_series_instance_uid
    source = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "patient_id": base.provenance.patient_id,
        "study_instance_uid": base.provenance.study_instance_uid,
        "series_instance_uid": ct_uid,
        "frame_of_reference_uid": "1.2.3.0.9",
        "instances": [[f"{ct_uid}.{k + 1}", 0] for k in range(CT_SHAPE[0])],
    }
    case = replace(
        Case(image=image, label=stored_label, geometry=stored, provenance=base.provenance),
        source_geometry=ct,
        dicom_source=source,
    )
    url = str(tmp_path_factory.mktemp("built-seg"))
    config = BuildConfig(
        chunk_shape=(8, 16, 16),
        shard_shape=(16, 32, 32),
        class_locations_samples=50,
        target_spacing=(2.5, 0.9, 0.8),
    )
    row = shards.write_case(case, shards.version_url(url, config), config, split="train")
    shards.commit_dataset(url, [row], [], config, {"name": "seg"})
    return url, ct_label, source


def test_seg_round_trips_to_the_ct_grid_labels_and_references_the_ct(seg_built, tmp_path):
    url, ct_label, source = seg_built
    case = next(iter(open_dataset(url)))
    assert case.attributes["dicom_source"] == source
    path = tmp_path / "seg.dcm"
    export_seg(case, str(path))
    seg = hd.seg.segread(path)
    assert seg.StudyInstanceUID == source["study_instance_uid"]
    assert seg.FrameOfReferenceUID == source["frame_of_reference_uid"]
    refs = {
        i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence
    }
    uids = [u for u, _ in source["instances"]]
    assert (
        refs <= set(uids)
        and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source["series_instance_uid"]
    )
    names = {s.SegmentNumber: s.SegmentLabel for s in seg.SegmentSequence}
    assert sorted(names.values()) == ["aorta", "liver", "portal_vein", "tumor"]
    value = {"liver": 1, "tumor": 2, "portal_vein": 3, "aorta": 4}
    back = np.zeros(ct_label.shape, dtype=np.uint8)
    for number, name in names.items():
        masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[number])
        back[masks[..., 0] > 0] = value[name]
    assert np.array_equal(back, ct_label)


def test_export_seg_command_writes_a_prediction(seg_built, tmp_path):
    from hcc_shards.cli import main

    url, _, _ = seg_built
    case = next(iter(open_dataset(url)))
    np.save(tmp_path / "p.npy", (np.asarray(case.label) == 1).astype(np.uint8))
    dest = tmp_path / "cli.dcm"
    assert main(["export", "seg", url, case.case_id, str(dest), "--prediction", str(tmp_path / "p.npy")]) == 0
    assert [s.SegmentLabel for s in hd.seg.segread(dest).SegmentSequence] == ["liver"]
    assert main(["export", "seg", url, "nosuch", str(dest)]) == 2


def test_prediction_seg_passes_dciodvfy(seg_built, tmp_path):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    url, _, _ = seg_built
    case = next(iter(open_dataset(url)))
    prediction = (np.asarray(case.label) > 0).astype(np.uint8)
    for name, label, algorithm in (("stored", None, None), ("prediction", prediction, "identity-model")):
        path = tmp_path / f"{name}.dcm"
        export_seg(case, str(path), label=label, algorithm=algorithm)
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], errors
    seg = hd.seg.segread(tmp_path / "prediction.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver"]
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"

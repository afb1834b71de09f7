"""SEG decode paths that the public files do not cover: overlap priority, a SEG on its own grid."""

from __future__ import annotations

from dataclasses import replace

import highdicom as hd
import numpy as np
import pydicom
import pytest
from builders import write_series
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import decode_or_record, decode_pairing
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import pair_patient
from hcc_shards.dicom.seg import paint, paint_in_order, priority_ranks
from hcc_shards.geometry import Geometry
from hcc_shards.labels import AORTA, LIVER, PORTAL_VEIN, TUMOR
from hcc_shards.quarantine import QuarantineRecord, Reason

CONFIG = BuildConfig()
SHAPE = (4, 24, 20)
PIXEL = (0.8, 0.8)


@pytest.mark.parametrize("priority", [(TUMOR, PORTAL_VEIN, AORTA, LIVER), (LIVER,), ()])
def test_painting_worst_first_equals_painting_in_turn(priority):
    # Random overlapping masks on a few slices, values 1-6 (some outside the priority: equal ranks,
    # where the earliest mask must win).
    rng = np.random.default_rng(len(priority))
    ranks = priority_ranks(priority)
    jobs = [(int(rng.integers(0, 3)), int(rng.integers(1, 7)), rng.random((9, 11)) < 0.4) for _ in range(40)]
    in_turn = np.zeros((3, 9, 11), dtype=np.uint8)
    for k, value, mask in jobs:
        paint(in_turn[k], mask, value, ranks)
    worst_first = np.zeros_like(in_turn)
    paint_in_order(worst_first, jobs, ranks)
    np.testing.assert_array_equal(worst_first, in_turn)
    assert len(np.unique(in_turn)) >= 4


def test_priority_ranks_and_paint():
    ranks = priority_ranks((TUMOR, PORTAL_VEIN, AORTA, LIVER))
    target = np.array([0, LIVER, TUMOR, AORTA, 0], dtype=np.uint8)
    paint(target, np.ones(5, bool), PORTAL_VEIN, ranks)
    np.testing.assert_array_equal(target, [PORTAL_VEIN, PORTAL_VEIN, TUMOR, PORTAL_VEIN, PORTAL_VEIN])


def _descriptions(names: list[tuple[str, object]]) -> list[hd.seg.SegmentDescription]:
    return [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=label,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i, (label, code) in enumerate(names)
    ]


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory):
    rng = np.random.default_rng(7)
    volume = rng.integers(0, 2000, size=SHAPE).astype(np.int16)
    positions = [(10.0, -20.0, -50.0 + 3.0 * k) for k in range(SHAPE[0])]
    paths = write_series(tmp_path_factory.mktemp("ct"), volume, positions, spacing=PIXEL)
    return paths, [pydicom.dcmread(p) for p in paths]


def _write_seg(path, sources, mask, names, **grid) -> None:
    grid.setdefault("omit_empty_frames", True)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_descriptions(names),
        series_instance_uid=generate_uid(),
        series_number=300,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="hcc-shards tests",
        manufacturer_model_name="builder",
        software_versions="1",
        device_serial_number="1",
        **grid,
    )
    seg.save_as(path)


def test_overlapping_segments_follow_the_priority(ct_series, tmp_path):
    paths, sources = ct_series
    mask = np.zeros((*SHAPE, 3), dtype=np.uint8)
    mask[1:3, 4:12, 4:12, 0] = 1  # liver
    mask[1:3, 8:16, 8:16, 1] = 1  # mass
    mask[2, 0:20, 10, 2] = 1  # portal vein crossing both
    names = [("Liver", codes.SCT.Liver), ("Mass", codes.SCT.Mass), ("Portal vein", codes.SCT.PortalVein)]
    _write_seg(tmp_path / "seg.dcm", sources, mask, names)
    headers = [index_file(str(p)) for p in [*paths, tmp_path / "seg.dcm"]]
    (pairing,), records = pair_patient(headers, CONFIG)
    assert records == []
    label = decode_pairing(pairing, CONFIG).label
    assert label[2, 10, 10] == TUMOR  # mass beats portal vein
    assert label[2, 5, 10] == PORTAL_VEIN  # portal vein beats liver
    assert label[1, 5, 5] == LIVER
    expected = np.zeros(SHAPE, np.uint8)
    for value, channel in ((LIVER, 0), (AORTA, -1), (PORTAL_VEIN, 2), (TUMOR, 1)):
        if channel >= 0:
            expected[mask[..., channel] > 0] = value
    np.testing.assert_array_equal(label, expected)
    # another priority: liver first
    liver_first = replace(CONFIG, overlap_priority=(LIVER, TUMOR, PORTAL_VEIN, AORTA))
    assert decode_pairing(pairing, liver_first).label[2, 10, 10] == LIVER


def test_seg_on_a_coarser_grid_is_resampled_by_world_nearest_neighbour(ct_series, tmp_path):
    """HCC_001: the SEG has its own in-plane grid; each CT voxel takes the nearest SEG pixel."""
    paths, sources = ct_series
    seg_geom = Geometry.from_dicom(
        shape=(SHAPE[0], 11, 9),
        image_orientation=(1, 0, 0, 0, 1, 0),
        first_position=(10.0 + 0.37, -20.0 - 0.21, -50.0),
        pixel_spacing=(1.7, 1.7),
        slice_step=3.0,
    )
    rng = np.random.default_rng(11)
    mask = np.zeros((*seg_geom.shape, 1), dtype=np.uint8)
    mask[1:3, 2:9, 1:7, 0] = rng.integers(0, 2, size=(2, 7, 6))
    grid = dict(
        plane_positions=[
            hd.PlanePositionSequence(
                hd.CoordinateSystemNames.PATIENT, seg_geom.index_to_world(np.array([[k, 0, 0]]))[0].tolist()
            )
            for k in range(SHAPE[0])
        ],
        plane_orientation=hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT, [1, 0, 0, 0, 1, 0]),
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=[1.7, 1.7], slice_thickness=3.0),
    )
    _write_seg(tmp_path / "seg.dcm", sources, mask, [("Liver", codes.SCT.Liver)], **grid)
    headers = [index_file(str(p)) for p in [*paths, tmp_path / "seg.dcm"]]
    (pairing,), records = pair_patient(headers, CONFIG)
    assert records == []
    case = decode_pairing(pairing, CONFIG)
    assert "seg_resampled_to_ct_grid" in case.warnings
    # independent expectation: CT voxel centre -> continuous SEG index -> floor(i + 0.5)
    idx = np.indices(SHAPE).reshape(3, -1).T
    src = np.floor(seg_geom.world_to_index(case.geometry.index_to_world(idx)) + 0.5).astype(int)
    inside = np.all((src >= 0) & (src < np.array(seg_geom.shape)), axis=1)
    expected = np.zeros(len(idx), np.uint8)
    expected[inside] = mask[src[inside, 0], src[inside, 1], src[inside, 2], 0] * LIVER
    np.testing.assert_array_equal(case.label, expected.reshape(SHAPE))
    assert case.label.sum() > 0


def test_seg_without_foreground_is_empty_seg(ct_series, tmp_path):
    paths, sources = ct_series
    mask = np.zeros((*SHAPE, 1), dtype=np.uint8)
    _write_seg(tmp_path / "seg.dcm", sources, mask, [("Liver", codes.SCT.Liver)], omit_empty_frames=False)
    headers = [index_file(str(p)) for p in [*paths, tmp_path / "seg.dcm"]]
    (pairing,), records = pair_patient(headers, CONFIG)
    assert records == []
    record = decode_or_record(pairing, CONFIG)
    assert isinstance(record, QuarantineRecord)
    assert (record.code, record.stage, record.url) == (Reason.EMPTY_SEG, "decode", str(tmp_path / "seg.dcm"))

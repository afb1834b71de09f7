"""The truth file matches what was written: UIDs, quirks, and label counts decoded independently."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from hcc_shards.geometry import Geometry
from hcc_shards.qc_rules import TUMOR_GT_LIVER
from hcc_shards.quarantine import Reason
from hcc_shards.synth import CohortTruth, Quirk, load_truth
from hcc_shards.synth.truth import count_labels, nearest_label_map

# Segment number -> label value, and the overlap rule Mass > Portal vein > Abdominal aorta > Liver.
_PRIORITY = {2: 4, 3: 3, 4: 2, 1: 1}


def _labels_on_ct(seg: pydicom.Dataset, ct: Geometry) -> np.ndarray:
    """Decode a BINARY SEG into labels on the CT grid with pydicom, numpy and scipy only."""
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    per_frame = seg.PerFrameFunctionalGroupsSequence
    # The SEG's frames lie on CT slice positions (z); in-plane they may use another grid.
    first = [float(v) for v in per_frame[0].PlanePositionSequence[0].ImagePositionPatient]
    seg_plane = Geometry.from_dicom(
        shape=(1, seg.Rows, seg.Columns),
        image_orientation=iop,
        first_position=first,
        pixel_spacing=spacing,
        slice_step=1.0,
    )
    ct_z = ct.index_to_world(
        np.stack([np.arange(ct.shape[0]), np.zeros(ct.shape[0]), np.zeros(ct.shape[0])], 1)
    )[:, 2]
    seg_labels = np.zeros((ct.shape[0], seg.Rows, seg.Columns), dtype=np.uint8)
    for frame, item in zip(frames, per_frame, strict=True):
        value = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        k = int(np.argmin(np.abs(ct_z - z)))
        assert abs(ct_z[k] - z) < 0.05
        current = seg_labels[k]
        rank = np.vectorize(lambda v: _PRIORITY.get(int(v), 0))(current)
        seg_labels[k] = np.where((frame > 0) & (_PRIORITY[value] > rank), value, current)
    if (
        seg.Rows == ct.shape[1]
        and seg.Columns == ct.shape[2]
        and np.allclose(seg_plane.affine[:3, 1:], ct.affine[:3, 1:])
    ):
        return seg_labels
    # Another in-plane grid: sample each CT pixel centre from the nearest SEG pixel (scipy order 0).
    nz, ny, nx = ct.shape
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    pts = ct.index_to_world(np.stack([np.zeros(jj.size), jj.ravel(), ii.ravel()], 1))
    src = seg_plane.world_to_index(pts)
    out = np.zeros(ct.shape, dtype=np.uint8)
    for k in range(nz):
        out[k] = ndimage.map_coordinates(
            seg_labels[k], src[:, 1:].T, order=0, mode="constant", cval=0
        ).reshape(ny, nx)
    return out


def test_truth_file_round_trips(tcia_cohort):
    loaded = load_truth(str(tcia_cohort.truth_path))
    assert loaded == tcia_cohort.truth
    assert CohortTruth.from_dict(json.loads(json.dumps(loaded.to_dict()))) == loaded
    assert loaded.patient("HCC_003").patient_id == "HCC_003"
    with pytest.raises(KeyError, match="HCC_999"):
        loaded.patient("HCC_999")
    data = loaded.to_dict()
    data["format_version"] = 99
    with pytest.raises(ValueError, match="format_version must be 1, got 99"):
        CohortTruth.from_dict(data)


def test_every_quirk_once_and_two_plain_patients(tcia_cohort):
    quirks = [p.quirk for p in tcia_cohort.truth.patients]
    assert [p.patient_id for p in tcia_cohort.truth.patients] == [f"HCC_{i:03d}" for i in range(1, 9)]
    for quirk in Quirk:
        if quirk is not Quirk.NONE:
            assert quirks.count(quirk) >= 1, quirk
    assert quirks.count(Quirk.NONE) >= 2


def test_expected_outcomes_per_quirk(tcia_cohort):
    for p in tcia_cohort.truth.patients:
        assert p.expected_reason is None or p.expected_reason in Reason._value2member_map_
        if p.quirk == Quirk.NO_SEG:
            assert (p.expected_case, p.expected_reason, p.seg_sop_instance_uid, p.voxels) == (
                False,
                None,
                None,
                (),
            )
            continue
        assert p.expected_case
        assert p.expected_pairing == (
            "frame_of_reference_geometry" if p.quirk == Quirk.SEG_WITHOUT_REFERENCES else "referenced_series"
        )
        counts = p.voxel_counts
        assert all(v > 0 for v in counts.values()), (p.patient_id, counts)
        flagged = counts["tumor"] > 1.5 * counts["liver"]
        assert flagged == (p.quirk == Quirk.TUMOUR_GT_LIVER), (p.patient_id, counts)
        assert p.expected_qc_flags == ((TUMOR_GT_LIVER,) if flagged else ())
        ct = next(s for s in p.series if s.series_instance_uid == p.ct_series_instance_uid)
        assert p.ct_acquisition_number in ct.acquisition_numbers and ct.geometry == p.ct_geometry
        assert (len(ct.acquisition_numbers) > 1) == (p.quirk == Quirk.STACKED_PHASES)


def test_voxel_counts_match_the_seg_decoded_independently(tcia_cohort):
    for p in tcia_cohort.truth.patients:
        if p.seg_sop_instance_uid is None:
            continue
        (path,) = tcia_cohort.root.glob(f"{p.patient_id}/*/300.000000-Segmentation-*/*.dcm")
        seg = pydicom.dcmread(path)
        labels = _labels_on_ct(seg, p.ct_geometry)
        assert dict(count_labels(labels)) == p.voxel_counts, p.patient_id
        if p.quirk == Quirk.SEG_OTHER_GRID:
            assert (seg.Rows, seg.Columns) != p.ct_geometry.shape[1:]


def test_nearest_label_map_picks_the_nearest_centre():
    src = Geometry.from_components(shape=(1, 2, 2), spacing_zyx=(1, 2, 2), origin_lps=(0, 0, 0))
    labels = np.array([[[1, 2], [3, 4]]], dtype=np.uint8)
    dst = Geometry.from_components(shape=(1, 4, 5), spacing_zyx=(1, 0.9, 0.9), origin_lps=(-0.4, -0.4, 0))
    out = nearest_label_map(labels, src, dst)
    # x centres -0.4, 0.5, 1.4, 2.3, 3.2 -> source column indices -0.2, 0.25, 0.7, 1.15, 1.6
    # -> nearest 0, 0, 1, 1, and 2 which is outside the source grid (background)
    np.testing.assert_array_equal(out[0, 0], [1, 1, 2, 2, 0])
    np.testing.assert_array_equal(out[0, :, 0], [1, 1, 3, 3])
    far = Geometry.from_components(shape=(1, 1, 1), spacing_zyx=(1, 1, 1), origin_lps=(50, 0, 0))
    assert nearest_label_map(labels, src, far).tolist() == [[[0]]]
    with pytest.raises(ValueError, match=r"labels shape \(1, 2, 2\) != source grid shape \(1, 3, 3\)"):
        nearest_label_map(
            labels,
            Geometry.from_components(shape=(1, 3, 3), spacing_zyx=(1, 1, 1), origin_lps=(0, 0, 0)),
            dst,
        )

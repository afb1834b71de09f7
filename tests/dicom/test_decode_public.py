"""Every complete public CT/SEG pair decodes, and the label map matches highdicom's own reading."""

from __future__ import annotations

import pickle
from dataclasses import replace

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_corpus import COMPLETE_PAIRS, SEGS, headers_of

from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import decode_pairing
from hcc_shards.dicom.header import ReferencedSeries
from hcc_shards.dicom.pairing import METHOD_REFERENCED_SERIES, pair_patient
from hcc_shards.dicom.seg import paint, priority_ranks
from hcc_shards.dicom.segments import map_segments
from hcc_shards.geometry import Geometry
from hcc_shards.quarantine import Reason


def _decode(name: str, corpus, config: BuildConfig) -> Case:
    headers = headers_of(COMPLETE_PAIRS[name], corpus)
    pairings, records = pair_patient(headers, config)
    assert records == []
    assert len(pairings) == 1
    assert pairings[0].method == METHOD_REFERENCED_SERIES
    return decode_pairing(pairings[0], config)


@pytest.fixture(scope="module")
def cases(corpus_headers, public_config) -> dict[str, Case]:
    return {name: _decode(name, corpus_headers, public_config) for name in COMPLETE_PAIRS}


def _highdicom_label(
    seg_path, geometry: Geometry, config: BuildConfig, mapping: dict[int, int]
) -> np.ndarray:
    """highdicom's reconstruction, placed on ``geometry`` through both affines, labelled like ours."""
    seg = hd.seg.segread(str(seg_path))
    numbers = [n for n in seg.get_segment_numbers() if n in mapping]
    vol = seg.get_volume(segment_numbers=numbers, combine_segments=False, rescale_fractional=True)
    arr = vol.array if vol.array.ndim == 4 else vol.array[..., None]
    idx = np.indices(geometry.shape).reshape(3, -1).T
    world = geometry.index_to_world(idx)
    hd_idx = np.rint(np.linalg.solve(vol.affine[:3, :3], (world - vol.affine[:3, 3]).T).T).astype(int)
    inside = np.all((hd_idx >= 0) & (hd_idx < np.array(arr.shape[:3])), axis=1)
    out = np.zeros(geometry.shape, dtype=np.uint8).reshape(-1)
    ranks = priority_ranks(config.overlap_priority)
    fractional = seg.segmentation_type.value == "FRACTIONAL"
    for channel, number in enumerate(numbers):
        values = np.zeros(out.shape, dtype=np.float64)
        values[inside] = arr[hd_idx[inside, 0], hd_idx[inside, 1], hd_idx[inside, 2], channel]
        mask = values >= config.fractional_threshold if fractional else values > 0
        paint(out, mask, mapping[number], ranks)
    return out.reshape(geometry.shape)


@pytest.mark.parametrize("name", sorted(COMPLETE_PAIRS))
def test_complete_pair_decodes(cases, name):
    case = cases[name]
    assert case.image.dtype == np.int16 and case.label.dtype == np.uint8
    assert case.label.any()
    assert case.unknown_segments == ()


# Pairs whose SEG frames lie on a regular grid that highdicom can build a volume from (the CT2
# SEGs reference slices across a 202 mm gap, which highdicom refuses to treat as one volume).
HIGHDICOM_VOLUMES = ["liver", "partial_overlaps", "23x38x3", "24x38x3", "labelmap_noppv", "hd_single_frame"]
HIGHDICOM_VOLUMES += ["hd_binary", "hd_fractional", "hd_true_fractional"]


@pytest.mark.parametrize("name", HIGHDICOM_VOLUMES)
def test_label_equals_highdicom_reconstruction(cases, corpus_headers, public_config, name):
    case = cases[name]
    seg_header = headers_of(COMPLETE_PAIRS[name][:1], corpus_headers)[0]
    mapping = map_segments(seg_header.segments, public_config).as_dict()
    expected = _highdicom_label(COMPLETE_PAIRS[name][0], case.geometry, public_config, mapping)
    np.testing.assert_array_equal(case.label, expected)


def test_overlap_seg_on_ct2_uses_contiguous_block(cases, corpus_headers, public_config):
    """Frames on the stray slice 202 mm away are dropped with a warning, the block decodes."""
    case = cases["hd_overlap"]
    assert case.geometry.shape == (3, 16, 16)
    assert case.geometry.origin[2] == pytest.approx(103.019997, abs=1e-4)
    assert case.geometry.spacing[0] == pytest.approx(1.25, abs=1e-3)
    assert any(w.startswith("ct_stack_has_gap") for w in case.warnings)
    assert "seg_frames_on_stray_slices_dropped:2" in case.warnings
    # highdicom, per source instance, on the three slices of the block
    seg = hd.seg.segread(str(COMPLETE_PAIRS["hd_overlap"][0]))
    uids = [s.sop_instance_uid for s in _pairing("hd_overlap", corpus_headers, public_config).slices]
    px = seg.get_pixels_by_source_instance(uids, combine_segments=False)
    mapping = map_segments(
        headers_of(COMPLETE_PAIRS["hd_overlap"][:1], corpus_headers)[0].segments, public_config
    ).as_dict()
    expected = np.zeros(case.geometry.shape, dtype=np.uint8)
    ranks = priority_ranks(public_config.overlap_priority)
    for channel, number in enumerate(sorted(mapping)):
        paint(expected, px[..., channel] > 0, mapping[number], ranks)
    np.testing.assert_array_equal(case.label, expected)


def _pairing(name, corpus, config):
    pairings, _ = pair_patient(headers_of(COMPLETE_PAIRS[name], corpus), config)
    return pairings[0]


@pytest.mark.parametrize("name", ["hd_binary", "hd_fractional", "hd_true_fractional"])
def test_ct2_gap_is_flagged_and_seg_decodes_on_its_block(cases, name):
    case = cases[name]
    assert case.geometry.shape == (3, 16, 16)
    assert any(w.startswith("ct_stack_has_gap:decoded_block_of_3_of_4_slices") for w in case.warnings)


def test_fractional_threshold_is_applied(corpus_headers, public_config):
    """seg_image_ct_true_fractional holds 0/64/128 of 255: 0.5 keeps the 128s, 0.25 the 64s too."""
    headers = headers_of(COMPLETE_PAIRS["hd_true_fractional"], corpus_headers)
    raw = pydicom.dcmread(COMPLETE_PAIRS["hd_true_fractional"][0]).pixel_array
    for threshold, cut in ((0.25, 64), (0.5, 128)):
        config = replace(public_config, fractional_threshold=threshold)
        (pairing,), _ = pair_patient(headers, config)
        assert np.count_nonzero(decode_pairing(pairing, config).label) == np.count_nonzero(raw >= cut)
    assert np.count_nonzero(raw >= 64) > np.count_nonzero(raw >= 128) > 0


def test_orphan_seg_is_quarantined(corpus_headers, public_config):
    seg = corpus_headers["dcmqi/data/sr-example/seg.dcm"]
    pairings, records = pair_patient([seg], public_config)
    assert pairings == []
    assert [r.code for r in records] == [Reason.SEG_WITHOUT_CT]
    assert "1.3.6.1.4.1.14519.5.2.1.2744.7002.261560220703676715130542397405" in records[0].message


def test_ct_geometry_agrees_with_simpleitk(cases):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(SEGS / "ct-3slice"))
    reader.SetFileNames(files)
    img = reader.Execute()
    geom = cases["liver"].geometry
    # SimpleITK reports (x, y, z) spacing and a row-major 3x3 direction with columns x, y, z.
    np.testing.assert_allclose(geom.origin, img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(geom.spacing[::-1], img.GetSpacing(), atol=1e-4)
    sitk_dir = np.array(img.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(geom.direction[:, ::-1], sitk_dir, atol=1e-6)
    # Same HU once SimpleITK's values are clipped like ours (the scanner pads with -3024).
    lo, hi = BuildConfig().hu_clip
    np.testing.assert_array_equal(cases["liver"].image, np.clip(sitk.GetArrayFromImage(img), lo, hi))


def test_liver_seg_is_stored_in_reverse_order_but_placed_by_reference(cases, corpus_headers):
    """liver.dcm stores frames top slice first; our stack is ordered along the normal."""
    seg = corpus_headers["dcmqi/data/segmentations/liver.dcm"]
    zs = [fr.position[2] for fr in seg.seg_frames]
    assert zs == sorted(zs)  # SEG frame z increases...
    case = cases["liver"]
    assert case.geometry.direction[2, 0] == pytest.approx(1.0)  # ...and our z axis points to S
    counts = case.label.reshape(3, -1).sum(axis=1)
    assert counts.tolist() == [36233, 35645, 35220]


def test_seg_on_multiframe_ct_by_frame_references(cases, corpus_headers, public_config):
    """The 23x38x3 SEG re-pointed at the multi-frame copy of its CT, frame by frame, decodes the same."""
    base = "dcmqi/data/segmentations/23x38x3"
    seg = corpus_headers[f"{base}/seg/label.seg"]
    mf = corpus_headers[f"{base}/multiframe/mf.dcm"]
    z_of = {corpus_headers[f"{base}/image/IMG000{k}.dcm"].sop_instance_uid: k for k in (1, 2, 3)}
    frame_at_z = {round(p[2], 3): k + 1 for k, p in enumerate(mf.frame_positions)}
    single_z = {
        corpus_headers[f"{base}/image/IMG000{k}.dcm"].sop_instance_uid: round(
            corpus_headers[f"{base}/image/IMG000{k}.dcm"].frame_positions[0][2], 3
        )
        for k in z_of.values()
    }
    frames = tuple(
        replace(
            fr,
            sources=tuple((mf.sop_instance_uid, frame_at_z[single_z[u]]) for u, _ in fr.sources),
            position=None,
        )
        for fr in seg.seg_frames
    )
    seg_mf = replace(
        seg,
        referenced_series=(ReferencedSeries(mf.series_instance_uid, (mf.sop_instance_uid,)),),
        seg_frames=frames,
    )
    (pairing,), records = pair_patient([mf, seg_mf], public_config)
    assert records == []
    assert [s.frame for s in pairing.slices] == [1, 2, 3]
    assert pairing.frame_slices == tuple(frame_at_z[single_z[fr.sources[0][0]]] - 1 for fr in seg.seg_frames)
    case = decode_pairing(pairing, public_config)
    np.testing.assert_array_equal(case.label, cases["23x38x3"].label)
    np.testing.assert_array_equal(case.image, cases["23x38x3"].image)


def test_pairing_pickles(corpus_headers, public_config):
    pairing = _pairing("hd_overlap", corpus_headers, public_config)
    again = pickle.loads(pickle.dumps(pairing))
    assert again == pairing
    assert again.geometry == pairing.geometry


@pytest.mark.parametrize("name", sorted(COMPLETE_PAIRS))
def test_frame_by_frame_binary_decode_equals_pydicom_frames(name, corpus_headers, public_config):
    # BINARY SEGs on their CT grid unpack one frame at a time; pydicom's whole-array decode is the
    # reference (the other SEG types take the pydicom path either way).
    from hcc_shards.dicom.ct import read_dataset
    from hcc_shards.dicom.seg import binary_frame_reader, labels_on_ct_grid

    headers = headers_of(COMPLETE_PAIRS[name], corpus_headers)
    pairing = pair_patient(headers, public_config)[0][0]
    ds = read_dataset(pairing.seg.url)
    args = (
        pairing.seg,
        pairing.frame_slices,
        pairing.slices,
        pairing.geometry,
        pairing.ct_headers[0].orientation,
        dict(pairing.segment_labels),
        public_config,
    )
    fast, fast_warnings = labels_on_ct_grid(ds, *args)
    slow, slow_warnings = labels_on_ct_grid(read_dataset(pairing.seg.url), *args, fast_binary=False)
    np.testing.assert_array_equal(fast, slow)
    assert fast_warnings == slow_warnings and fast.any()
    binary = pairing.seg.segmentation_type == "BINARY"
    assert (binary_frame_reader(ds, pairing.seg) is not None) == (
        binary and pairing.seg.rows * pairing.seg.columns % 8 == 0
    )


def test_frame_by_frame_decode_serves_the_binary_pairs(corpus_headers, public_config):
    from hcc_shards.dicom.ct import read_dataset
    from hcc_shards.dicom.seg import binary_frame_reader

    served = []
    for name, paths in COMPLETE_PAIRS.items():
        seg = pair_patient(headers_of(paths, corpus_headers), public_config)[0][0].seg
        if binary_frame_reader(read_dataset(seg.url), seg) is not None:
            served.append(name)
    assert len(served) >= 4, served

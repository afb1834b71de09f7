"""Fidelity, grid convention and memory of hcc_shards.resample, against SimpleITK on the same grid."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from phantoms import default_structures, make_case

from hcc_shards.config import BuildConfig
from hcc_shards.geometry import Geometry
from hcc_shards.labels import LABELS
from hcc_shards.resample import resample_case, resample_image, resample_label, target_geometry, target_shape

TARGETS = [(2.2, 0.9, 0.9), (3.0, 1.6, 1.6), (2.5, 1.4, 1.4)]
"""Up and down in plane and in z; the last is an exact 2x upsampling in z, where every surface
midpoint is a tie (SimpleITK gives ties to background; we give them to the even source voxel)."""
EXACT_TIES = (2.5, 1.4, 1.4)


def _to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(reversed(geometry.spacing)))
    img.SetOrigin(geometry.origin)
    # SimpleITK index order is (x, y, z): reverse the direction columns.
    img.SetDirection(geometry.direction[:, ::-1].ravel().tolist())
    return img


def _sitk_resample(array: np.ndarray, source: Geometry, target: Geometry, interpolator) -> np.ndarray:
    ref = _to_sitk(np.zeros(target.shape, dtype=array.dtype), target)
    out = sitk.Resample(_to_sitk(array, source), ref, sitk.Transform(), interpolator, 0.0)
    return sitk.GetArrayFromImage(out)


@pytest.fixture(scope="module")
def case():
    return make_case((40, 160, 160), (5.0, 1.4, 1.4), structures=default_structures(scale=0.8))


@pytest.fixture(scope="module", params=TARGETS, ids=lambda t: "x".join(map(str, t)))
def resampled(request, case):
    return request.param, resample_case(case, request.param, BuildConfig())


def _inside_source(source: Geometry, target: Geometry) -> np.ndarray:
    """Target voxels whose centre lies within the source voxel centres (no extrapolation)."""
    masks = []
    for a in range(3):
        pos = np.arange(target.shape[a]) * target.spacing[a] / source.spacing[a]
        masks.append(pos <= source.shape[a] - 1 + 1e-9)
    return masks[0][:, None, None] & masks[1][None, :, None] & masks[2][None, None, :]


def test_grid_convention_is_world_exact(case, resampled):
    spacing, out = resampled
    g = out.geometry
    assert g.spacing == pytest.approx(spacing, abs=1e-12)
    assert g.origin == case.geometry.origin
    np.testing.assert_allclose(g.direction, case.geometry.direction, atol=1e-12)
    # Target centres cover the source centres, and overshoot by less than one target voxel.
    for a in range(3):
        last_src = (case.geometry.shape[a] - 1) * case.geometry.spacing[a]
        last_dst = (g.shape[a] - 1) * g.spacing[a]
        assert last_src - 1e-6 <= last_dst < last_src + g.spacing[a]
    assert out.source_geometry == case.geometry


@pytest.mark.parametrize("label", [lab for lab in LABELS if lab.name in ("liver", "tumor", "aorta")], ids=str)
def test_label_volume_and_centroid(case, resampled, label):
    _, out = resampled
    src = case.label == label.value
    dst = out.label == label.value
    v_src = src.sum() * case.geometry.voxel_volume_ml
    v_dst = dst.sum() * out.geometry.voxel_volume_ml
    assert v_src >= 10.0
    assert abs(v_dst - v_src) / v_src < 0.02, (label.name, v_src, v_dst)
    c_src = case.geometry.index_to_world(np.argwhere(src).mean(axis=0))[0]
    c_dst = out.geometry.index_to_world(np.argwhere(dst).mean(axis=0))[0]
    # Half a target voxel, measured along each array axis (world distance projected on its direction).
    along = out.geometry.direction.T @ (c_dst - c_src)
    assert np.all(np.abs(along) <= 0.5 * np.asarray(out.geometry.spacing)), (label.name, along)


def test_labels_match_simpleitk_label_linear(case, resampled):
    spacing, out = resampled
    ref = _sitk_resample(case.label, case.geometry, out.geometry, sitk.sitkLabelLinear)
    if spacing == EXACT_TIES:
        # Ties broken differently on purpose: ours keeps the liver volume, SimpleITK loses some.
        liver = LABELS[0].value
        truth = (case.label == liver).sum() * case.geometry.voxel_volume_ml
        ours = (out.label == liver).sum() * out.geometry.voxel_volume_ml
        theirs = (ref == liver).sum() * out.geometry.voxel_volume_ml
        assert abs(ours - truth) < 0.5 * abs(theirs - truth), (truth, ours, theirs)
        # ... and no systematic shift either (ties always upwards would move it half a voxel in z).
        c_src = case.geometry.index_to_world(np.argwhere(case.label == liver).mean(axis=0))[0]
        c_dst = out.geometry.index_to_world(np.argwhere(out.label == liver).mean(axis=0))[0]
        assert np.linalg.norm(c_dst - c_src) < 0.1 * out.geometry.spacing[0]
        return
    inside = _inside_source(case.geometry, out.geometry)
    for lab in LABELS:
        a = (out.label == lab.value) & inside
        b = (ref == lab.value) & inside
        if (case.label == lab.value).sum() * case.geometry.voxel_volume_ml < 10.0:
            continue
        dice = 2.0 * (a & b).sum() / (a.sum() + b.sum())
        assert dice >= 0.98, (lab.name, dice)


def test_image_matches_simpleitk_linear(case, resampled):
    _, out = resampled
    ref = _sitk_resample(case.image.astype(np.float32), case.geometry, out.geometry, sitk.sitkLinear)
    inside = _inside_source(case.geometry, out.geometry)
    mad = np.abs(out.image.astype(np.float32) - ref)[inside].mean()
    assert mad < 1.0, mad
    assert out.image.dtype == np.int16


def test_nearest_and_cubic_options(case):
    config = replace(BuildConfig(), label_interpolation="nearest", image_interpolation="cubic")
    out = resample_case(case, (2.2, 1.2, 1.2), config)  # no exact ties: SimpleITK rounds them up
    ref = _sitk_resample(case.label, case.geometry, out.geometry, sitk.sitkNearestNeighbor)
    inside = _inside_source(case.geometry, out.geometry)
    assert np.mean(out.label[inside] == ref[inside]) > 0.999
    # Catmull-Rom reproduces a linear ramp exactly in plane.
    g = case.geometry
    ramp = np.broadcast_to((np.arange(g.shape[2], dtype=np.int16) * 3)[None, None, :], g.shape).copy()
    tg = target_geometry(g, (5.0, 1.2, 1.2))
    got = resample_image(ramp, g, tg, kind="cubic")
    want = np.rint(np.minimum(np.arange(tg.shape[2]) * 1.2 / 1.4, g.shape[2] - 1) * 3)
    np.testing.assert_array_equal(got[0, 0], want.astype(np.int16))


def test_oblique_direction_keeps_world_alignment():
    theta = np.deg2rad(20)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    direction = rot @ np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)
    case = make_case(
        (24, 96, 96), (5.0, 2.0, 2.0), direction=direction, structures=default_structures(scale=0.5)
    )
    out = resample_case(case, (2.5, 2.5, 2.5), BuildConfig())
    np.testing.assert_allclose(out.geometry.direction, direction, atol=1e-12)
    liver = LABELS[0].value
    c_src = case.geometry.index_to_world(np.argwhere(case.label == liver).mean(axis=0))[0]
    c_dst = out.geometry.index_to_world(np.argwhere(out.label == liver).mean(axis=0))[0]
    assert np.linalg.norm(c_dst - c_src) < 1.25


def test_unchanged_spacing_is_identity(case):
    out = resample_case(case, case.geometry.spacing, BuildConfig())
    assert out.geometry == case.geometry
    np.testing.assert_array_equal(out.image, case.image)
    np.testing.assert_array_equal(out.label, case.label)
    # Only z changes: every in-plane sample is a source sample, so slice 0 is unchanged.
    out = resample_case(case, (2.5, 1.4, 1.4), BuildConfig())
    assert out.geometry.shape[1:] == case.geometry.shape[1:]
    np.testing.assert_array_equal(out.label[0], case.label[0])
    np.testing.assert_array_equal(out.image[0], case.image[0])


def test_memory_stays_bounded(case):
    target = target_geometry(case.geometry, (2.5, 0.9, 0.9))
    n = max(np.prod(target.shape), np.prod(case.geometry.shape))
    tracemalloc.start()
    try:
        resample_label(case.label, case.geometry, target)
        _, peak_label = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        resample_image(case.image, case.geometry, target)
        _, peak_image = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A float64 copy per label alone would be 8 bytes x voxels x 4 labels = 32 bytes per voxel.
    assert peak_label < 16 * n, peak_label / n
    assert peak_image < 16 * n, peak_image / n


def test_bad_inputs_name_expected_and_actual(case):
    with pytest.raises(ValueError, match=r"three positive mm values.*\(1.0, -2.0, 1.0\)"):
        target_shape(case.geometry, (1.0, -2.0, 1.0))
    moved = Geometry.from_components(
        shape=(10, 10, 10),
        spacing_zyx=(1, 1, 1),
        origin_lps=(5.0, 0.0, 0.0),
        direction=case.geometry.direction,
    )
    with pytest.raises(ValueError, match="must equal the source origin"):
        resample_label(case.label, case.geometry, moved)
    with pytest.raises(ValueError, match="'label_safe' or 'nearest', got 'cubic'"):
        resample_label(case.label, case.geometry, case.geometry, kind="cubic")


def test_label_values_beyond_the_bit_fast_path():
    g = Geometry.from_components(shape=(8, 20, 20), spacing_zyx=(2.0, 1.0, 1.0), origin_lps=(0, 0, 0))
    label = np.zeros(g.shape, dtype=np.uint8)
    label[2:6, 4:12, 5:15] = 9
    label[3:5, 6:8, 6:8] = 1
    out = resample_label(label, g, target_geometry(g, (1.0, 1.0, 1.0)))
    assert set(np.unique(out).tolist()) == {0, 1, 9}
    # Source slices 2..5 (8 mm) become target slices 3..10 (8 mm): the tie at 1.5 goes to the even
    # slice 2 (label), the tie at 5.5 to the even slice 6 (background).
    assert np.flatnonzero((out == 9).any(axis=(1, 2))).tolist() == list(range(3, 11))


@pytest.mark.parametrize(
    "spacing",
    [(5.0, 1.6, 1.6), (5.0, 1.4, 1.1), (5.0, 1.2, 1.4), (3.0, 1.6, 1.2), (4.0, 1.4, 1.4)],
    ids=["in-plane", "x-only", "y-only", "z-and-in-plane", "z-only"],
)
def test_slice_by_slice_linear_equals_the_slab_path(case, spacing):
    # The slice-by-slice in-plane pass must give the slab path's voxels exactly (same arithmetic).
    from hcc_shards import resample as R

    target = target_geometry(case.geometry, spacing)
    got = resample_image(case.image, case.geometry, target, kind="linear", clip=(-1024, 3071))
    steps = R._steps(case.geometry, target)
    pos = [R.axis_positions(case.geometry.shape[a], target.shape[a], steps[a]) for a in range(3)]
    expected = case.image
    for a in R._axis_order(case.geometry.shape, target.shape, steps):
        if a != 0:
            expected = R._interp_axis(expected, a, pos[a], "linear")
    if 0 in R._axis_order(case.geometry.shape, target.shape, steps):
        expected = R._interp_axis(expected, 0, pos[0], "linear")
    np.testing.assert_array_equal(got, R._to_int16(expected, (-1024, 3071)))

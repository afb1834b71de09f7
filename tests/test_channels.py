"""Channels on the annotated grid (hcc_shards.channels): resampling, coverage, the rigid check."""

from __future__ import annotations

import numpy as np

from hcc_shards.channels import consistency, resample_onto, rigid_check, vessel_hu
from hcc_shards.format import IMAGE_FILL
from hcc_shards.geometry import Geometry
from hcc_shards.labels import AORTA, PORTAL_VEIN


def _ramp(shape: tuple[int, int, int]) -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (10 * z + 3 * y + x).astype(np.int16)


def test_same_grid_is_identity_and_fully_covered() -> None:
    g = Geometry.from_components(shape=(6, 7, 8), spacing_zyx=(2.0, 1.0, 1.0), origin_lps=(0, 0, 0))
    image = _ramp(g.shape)
    out, covered = resample_onto(image, g, g)
    assert np.array_equal(out, image) and covered.all()


def test_linear_world_alignment_and_padding_outside_the_source() -> None:
    src = Geometry.from_components(shape=(6, 8, 8), spacing_zyx=(2.0, 1.0, 1.0), origin_lps=(0.0, 0.0, 0.0))
    # Target: half-voxel steps in x, shifted 4 mm up in S so its last slices lie beyond the source.
    dst = Geometry.from_components(shape=(6, 8, 15), spacing_zyx=(2.0, 1.0, 0.5), origin_lps=(0.0, 0.0, 4.0))
    image = _ramp(src.shape)
    out, covered = resample_onto(image, src, dst)
    # S = 4 mm is source slice 2; x = 0.5 mm lies between source columns 0 and 1.
    assert out[0, 0, 0] == image[2, 0, 0]
    assert out[0, 0, 1] == round((image[2, 0, 0] + image[2, 0, 1]) / 2)
    # Source slices reach S = 10 mm (+ half a slice): target slices 0..3 covered, 4.. not.
    assert covered[:4].all() and not covered[4:].any()
    assert (out[4:] == IMAGE_FILL).all()


def test_rigid_check_finds_a_translation_and_passes_an_aligned_copy() -> None:
    rng = np.random.default_rng(0)
    smooth = rng.normal(size=(24, 40, 40)).cumsum(axis=1).cumsum(axis=2)
    body = (smooth / smooth.std() * 80 + 40).astype(np.int16)
    covered = np.ones(body.shape, dtype=bool)
    noisy = (body + rng.normal(0, 5, body.shape)).astype(np.int16)
    ncc, shift = rigid_check(body, noisy, covered, (2.0, 1.0, 1.0))
    assert ncc is not None and ncc > 0.95 and shift == (0.0, 0.0, 0.0)
    moved = np.roll(noisy, 4, axis=2)
    ncc_moved, shift_moved = rigid_check(body, moved, covered, (2.0, 1.0, 1.0))
    assert ncc_moved < ncc
    assert abs(shift_moved[2]) == 4.0 and shift_moved[:2] == (0.0, 0.0)


def test_consistency_needs_covered_body_voxels() -> None:
    air = np.full((4, 4, 4), -1000, dtype=np.int16)
    assert consistency(air, air, np.ones(air.shape, dtype=bool)) is None


def test_vessel_means_only_over_covered_voxels() -> None:
    image = np.zeros((2, 10, 10), dtype=np.int16)
    label = np.zeros_like(image, dtype=np.uint8)
    label[0, :3, :3] = AORTA
    image[0, :3, :3] = 300
    label[1, :2, :2] = PORTAL_VEIN  # 4 voxels: too few to measure
    covered = np.ones(image.shape, dtype=bool)
    assert vessel_hu(image, label, covered) == {"aorta": 300.0, "portal_vein": None}
    covered[0, :, :] = False
    assert vessel_hu(image, label, covered) == {"aorta": None, "portal_vein": None}
    assert vessel_hu(image, None) == {"aorta": None, "portal_vein": None}

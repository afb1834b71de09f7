"""Series geometry checks: ordering, jitter, gaps, duplicates, tilt, acquisitions."""

from __future__ import annotations

import random

import numpy as np
import pytest
from builders import header, headers, moved
from dicom_corpus import CT2, DATA

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.stack import check_stack, series_stacks, split_acquisitions
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import Reason

CONFIG = BuildConfig()


def test_orders_by_position_along_normal_not_by_input_order():
    zs = [2.5 * k for k in range(10)]
    shuffled = headers(zs)
    random.Random(0).shuffle(shuffled)
    stack = check_stack(shuffled, CONFIG)
    assert [s.position[2] for s in stack.slices] == zs
    assert len(stack.blocks) == 1
    g = stack.block_geometry(stack.blocks[0])
    assert g.shape == (10, 4, 4)
    assert g.spacing == pytest.approx((2.5, 0.8, 0.8))


def test_positions_in_any_order_run_along_the_normal():
    # Positions listed head to feet: the stack still runs along +normal, first slice lowest.
    stack = check_stack(headers([0.0, -2.5, -5.0]), CONFIG)
    g = stack.block_geometry(stack.blocks[0])
    assert g.origin[2] == pytest.approx(-5.0)
    np.testing.assert_allclose(g.direction[:, 0], [0.0, 0.0, 1.0])


def test_rounding_jitter_is_accepted():
    # HCC_021: positions that differ from a regular grid only by rounding
    rng = np.random.default_rng(0)
    zs = [2.5 * k + float(rng.uniform(-0.02, 0.02)) for k in range(40)]
    stack = check_stack(headers(zs), CONFIG)
    assert len(stack.blocks) == 1
    assert stack.blocks[0].step_mm == pytest.approx(2.5, abs=0.01)


def test_missing_slice_splits_into_blocks():
    zs = [2.5 * k for k in range(10) if k != 6]
    stack = check_stack(headers(zs), CONFIG)
    assert [(b.start, b.stop) for b in stack.blocks] == [(0, 6), (6, 9)]
    assert all(b.step_mm == pytest.approx(2.5) for b in stack.blocks)


def test_non_uniform_spacing_is_quarantined():
    zs = [0.0, 2.5, 5.0, 8.0, 10.5, 13.0]
    with pytest.raises(QuarantineError) as err:
        check_stack(headers(zs), CONFIG)
    assert err.value.code == Reason.NON_UNIFORM_SPACING
    assert "3.0000 mm, expected 2.5000 mm" in err.value.message


def test_duplicate_position_is_quarantined():
    hs = [*headers([0.0, 2.5, 5.0]), header(2.5 + 0.01, uid="dup")]
    with pytest.raises(QuarantineError) as err:
        check_stack(hs, CONFIG)
    assert err.value.code == Reason.DUPLICATE_SLICE


def test_gantry_tilt_is_quarantined():
    # 10 degrees of tilt: every slice shifts 0.44 mm in y per 2.5 mm step
    hs = [header(2.5 * k, xy=(0.0, 2.5 * k * np.tan(np.deg2rad(10)))) for k in range(6)]
    with pytest.raises(QuarantineError) as err:
        check_stack(hs, CONFIG)
    assert err.value.code == Reason.GANTRY_TILT


def test_oblique_but_untilted_stack_is_accepted():
    theta = np.deg2rad(25)
    iop = (np.cos(theta), np.sin(theta), 0.0, -np.sin(theta), np.cos(theta), 0.0)
    tilted_plane = (np.cos(theta), 0.0, -np.sin(theta), 0.0, 1.0, 0.0)  # rotated about y
    normal = np.cross(tilted_plane[:3], tilted_plane[3:])
    hs = [moved(header(0.0, orientation=tilted_plane), normal * 3.0 * k) for k in range(5)]
    stack = check_stack(hs, CONFIG)
    assert stack.block_geometry(stack.blocks[0]).spacing[0] == pytest.approx(3.0)
    check_stack(headers([0.0, 2.0, 4.0], orientation=iop), CONFIG)


@pytest.mark.parametrize(
    ("change", "needle", "code"),
    [
        ({"rows": 5}, "Rows x Columns", Reason.INCONSISTENT_DIMENSIONS),
        ({"spacing": (0.7, 0.8)}, "PixelSpacing", Reason.INCONSISTENT_GEOMETRY),
        (
            {"orientation": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)},
            "ImageOrientationPatient",
            Reason.INCONSISTENT_GEOMETRY,
        ),
    ],
)
def test_inconsistent_geometry_is_quarantined(change, needle, code):
    hs = [*headers([0.0, 2.5]), header(5.0, **change)]
    with pytest.raises(QuarantineError) as err:
        check_stack(hs, CONFIG)
    assert err.value.code == code
    assert needle in err.value.message


def test_stacked_phases_are_split_by_acquisition_number():
    zs = [2.5 * k for k in range(8)]
    hs = headers(zs, acquisition=2) + headers(zs, acquisition=3)
    groups = split_acquisitions(hs)
    assert sorted(groups) == [2, 3]
    stacks = series_stacks(hs, CONFIG)
    assert all(len(s.slices) == 8 and len(s.blocks) == 1 for s in stacks.values())


def test_interleaved_acquisitions_are_split():
    # HCC_008/010/011: two acquisitions on different z grids inside one series
    hs = headers([2.5 * k for k in range(8)], acquisition=1) + headers(
        [1.0 + 5.0 * k for k in range(4)], acquisition=2
    )
    stacks = series_stacks(hs, CONFIG)
    assert {k: len(v.slices) for k, v in stacks.items()} == {1: 8, 2: 4}
    assert stacks[2].blocks[0].step_mm == pytest.approx(5.0)


def test_disjoint_acquisition_numbers_stay_one_stack():
    hs = headers([0.0, 2.5], acquisition=4) + headers([5.0, 7.5, 10.0], acquisition=5)
    stacks = series_stacks(hs, CONFIG)
    assert list(stacks) == [None]
    assert len(stacks[None].slices) == 5 and len(stacks[None].blocks) == 1


def test_duplicate_position_without_acquisition_number_is_quarantined():
    hs = [*headers([0.0, 2.5, 5.0], acquisition=None), header(2.5, acquisition=None, uid="again")]
    result = series_stacks(hs, CONFIG)
    assert isinstance(result[None], QuarantineError)
    assert result[None].code == Reason.DUPLICATE_SLICE


def test_pydicom_ct2_gap_is_flagged(corpus_headers):
    """z = -99.48, 103.02, 104.27, 105.52: a 202 mm gap splits a stray slice from a block of three."""
    hs = [corpus_headers[str(p.relative_to(DATA))] for p in sorted(CT2.iterdir())]
    stacks = series_stacks(hs, CONFIG)
    assert list(stacks) == [None]  # AcquisitionNumbers 4, 44, 45, 45 mark disjoint ranges
    stack = stacks[None]
    assert [(b.start, b.stop) for b in stack.blocks] == [(0, 1), (1, 4)]
    assert stack.blocks[1].step_mm == pytest.approx(1.25, abs=1e-3)

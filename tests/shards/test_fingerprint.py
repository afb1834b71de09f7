import pytest

from hcc_shards.shards.fingerprint import auto_target_spacing


def test_isotropic_enough_takes_the_median():
    spacings = [(2.5, 0.7, 0.7), (2.5, 0.8, 0.8), (5.0, 0.9, 0.9)]
    assert auto_target_spacing(spacings) == (2.5, 0.8, 0.8)


def test_anisotropic_axis_takes_its_10th_percentile():
    # Median z 5.0 > 3 x 0.78: z takes the 10th percentile of the z spacings instead.
    spacings = [(2.5, 0.78, 0.78)] * 2 + [(5.0, 0.78, 0.78)] * 8
    assert auto_target_spacing(spacings) == (2.5, 0.78, 0.78)


def test_anisotropic_axis_percentile_interpolates():
    # z: [0.5, 5 x 9]; 10th percentile (linear) = 0.5 + 0.9 * 4.5 = 4.55, coarser than 1.2: kept.
    spacings = [(0.5, 1.0, 1.0)] + [(5.0, 1.2, 1.2)] * 9
    assert auto_target_spacing(spacings) == (4.55, 1.2, 1.2)


def test_anisotropic_axis_never_finer_than_the_others():
    # Median z 7 > 3 x 2; its 10th percentile 1.0 is finer than the in-plane 2.0, so z becomes 2.0.
    spacings = [(1.0, 2.0, 2.0)] * 2 + [(7.0, 2.0, 2.0)] * 8
    assert auto_target_spacing(spacings) == (2.0, 2.0, 2.0)
    # A higher threshold leaves the median alone.
    assert auto_target_spacing(spacings, anisotropy_threshold=4.0) == (7.0, 2.0, 2.0)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match=r"non-empty sequence of \(z, y, x\) triples, got shape \(0,\)"):
        auto_target_spacing([])
    with pytest.raises(ValueError, match="positive and finite"):
        auto_target_spacing([(1.0, 0.0, 1.0)])


def test_rounding_jitter_does_not_set_the_target():
    # Two of five patients have slice steps of 10 mm written with jitter; the median would be
    # 10.000304 without merging, and every case would be resampled by 0.003 %.
    spacings = [(10.0, 0.8, 0.8)] * 2 + [(10.000304, 0.8, 0.8), (10.000304, 0.8, 0.8), (10.0002, 0.8, 0.8)]
    assert auto_target_spacing(spacings, anisotropy_threshold=20.0) == (10.0, 0.8, 0.8)
    # Values further apart than the tolerance stay distinct.
    assert auto_target_spacing([(2.5, 0.8, 0.8), (2.6, 0.8, 0.8), (2.6, 0.8, 0.8)], 20.0) == (2.6, 0.8, 0.8)


def test_merge_jitter_takes_the_most_common_value_of_each_group():
    from hcc_shards.shards.fingerprint import merge_jitter

    merged = merge_jitter([5.0, 0.7, 5.004, 0.70001, 0.7, 5.004])
    assert merged.tolist() == [5.004, 0.7, 5.004, 0.7, 0.7, 5.004]

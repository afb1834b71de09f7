import numpy as np
import pytest

from hcc_shards.labels import LABELS
from hcc_shards.shards.foreground import class_foreground, sample_count


@pytest.fixture(scope="module")
def label():
    lab = np.zeros((20, 40, 50), dtype=np.uint8)
    lab[2:18, 5:35, 4:46] = 1  # liver: 16 * 30 * 42 = 20160 voxels
    lab[5:9, 10:14, 20:25] = 2  # tumour: 80 voxels
    lab[19, 39, 49] = 4  # aorta: one voxel in the last corner
    return lab


def test_counts_boxes_and_samples(label):
    fg = class_foreground(label, case_id="c1", seed=0, min_samples=1000, fraction=0.01)
    assert set(fg) == {lab.name for lab in LABELS}
    liver = fg["liver"]
    assert liver.count == 16 * 30 * 42 - 80
    assert liver.bbox_zyx == ((2, 5, 4), (18, 35, 46))
    assert liver.locations.shape == (1000, 3) and liver.locations.dtype == np.int32
    z, y, x = liver.locations.T
    assert np.all(label[z, y, x] == 1)
    flat = np.ravel_multi_index(liver.locations.T, label.shape)
    assert np.all(np.diff(flat) > 0), "sorted in C order, no duplicates"
    tumour = fg["tumor"]
    assert tumour.count == 80 and tumour.locations.shape == (80, 3)
    assert fg["aorta"].bbox_zyx == ((19, 39, 49), (20, 40, 50))
    pv = fg["portal_vein"]
    assert pv.count == 0 and pv.bbox_zyx is None and pv.locations.shape == (0, 3)


def test_sample_rule():
    assert sample_count(50, 10_000, 0.01) == 50
    assert sample_count(2_000_000, 10_000, 0.01) == 20_000
    assert sample_count(500_000, 10_000, 0.01) == 10_000


def test_seeded_and_case_specific(label):
    a = class_foreground(label, case_id="c1", seed=0, min_samples=100, fraction=0.0)["liver"].locations
    b = class_foreground(label, case_id="c1", seed=0, min_samples=100, fraction=0.0)["liver"].locations
    c = class_foreground(label, case_id="c1", seed=1, min_samples=100, fraction=0.0)["liver"].locations
    d = class_foreground(label, case_id="c2", seed=0, min_samples=100, fraction=0.0)["liver"].locations
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_rejects_non_uint8():
    with pytest.raises(ValueError, match="3-D uint8 array, got 3-D int16"):
        class_foreground(np.zeros((2, 2, 2), np.int16), case_id="c", seed=0)

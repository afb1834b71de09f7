"""Samplers: purity, padding rules, foreground probability statistics, class weights, grids."""

import numpy as np
import pytest

from hcc_shards.read import RandomPatches, SlidingWindows, WholeVolumes, open_dataset, sliding_window_starts
from hcc_shards.read.sampling import start_range

pytestmark = pytest.mark.reader_env

PATCH = (8, 24, 24)


@pytest.fixture(scope="module")
def ds(mini_root):
    return open_dataset(mini_root)


def test_spec_is_a_pure_function_of_seed_epoch_position(ds):
    sampler = RandomPatches(PATCH, samples_per_epoch=30)
    a = [sampler.spec(ds, 5, 2, p) for p in range(30)]
    b = [sampler.spec(ds, 5, 2, p) for p in reversed(range(30))][::-1]
    assert a == b
    assert a != [sampler.spec(ds, 6, 2, p) for p in range(30)]
    assert a != [sampler.spec(ds, 5, 3, p) for p in range(30)]
    # Each block of len(dataset) positions visits every case once.
    for block in range(10):
        assert sorted(s.case_id for s in a[3 * block : 3 * block + 3]) == ["A", "B", "C"]


def test_start_range_keeps_patches_inside_or_covers_small_volumes():
    lo, hi = start_range((20, 48, 10), (8, 24, 24))
    assert lo.tolist() == [0, 0, -14] and hi.tolist() == [12, 24, 0]


def test_random_patches_stay_in_bounds_and_pad_small_volumes(ds):
    sampler = RandomPatches(PATCH, samples_per_epoch=300, foreground_probability=0.5)
    for p in range(300):
        spec = sampler.spec(ds, 0, 0, p)
        shape = ds.shapes[ds.row(spec.case_id)]
        for a, s, n in zip(spec.start, spec.size, shape, strict=True):
            if n >= s:
                assert 0 <= a <= n - s
            else:
                assert n - s <= a <= 0  # covers the whole axis, padding around it


@pytest.mark.parametrize("probability", [0.0, 0.33, 1.0])
def test_foreground_probability_statistics(ds, probability):
    n = 1500
    sampler = RandomPatches(PATCH, samples_per_epoch=n, foreground_probability=probability)
    specs = [sampler.spec(ds, 1, 0, p) for p in range(n)]
    forced = np.array([s.label is not None for s in specs])
    # Every case has foreground, so the forced fraction is binomial(n, p): allow 4 sigma.
    sigma = np.sqrt(probability * (1 - probability) / n)
    assert abs(forced.mean() - probability) <= 4 * sigma + 1e-9
    for spec in specs[:200]:
        if spec.label is None:
            continue
        value = {v: k for k, v in ds.label_names.items()}[spec.label]
        _, label = ds.case(spec.case_id).read_region(spec.start, spec.stop)
        assert (label == value).any(), f"forced patch {spec} holds no {spec.label}"


def test_class_weights_pick_only_weighted_classes(ds):
    sampler = RandomPatches(
        PATCH, samples_per_epoch=300, foreground_probability=1.0, class_weights={"aorta": 1.0}
    )
    labels = {sampler.spec(ds, 0, 0, p).label for p in range(300)}
    assert labels == {"aorta"}
    both = RandomPatches(
        PATCH, samples_per_epoch=600, foreground_probability=1.0, class_weights={"tumor": 3, "liver": 1}
    )
    got = [both.spec(ds, 0, 0, p).label for p in range(600)]
    share = got.count("tumor") / len(got)
    assert 0.68 < share < 0.82 and set(got) == {"tumor", "liver"}
    with pytest.raises(ValueError, match="class_weights must be >= 0 with at least one > 0"):
        RandomPatches(PATCH, class_weights={"tumor": 0})


def test_sliding_windows_cover_every_voxel(ds):
    sampler = SlidingWindows(PATCH, overlap=0.25)
    covered = {
        cid: np.zeros(tuple(shape), dtype=np.int32) for cid, shape in zip(ds.case_ids, ds.shapes, strict=True)
    }
    n = sampler.epoch_length(ds)
    for p in range(n):
        spec = sampler.spec(ds, 0, 0, p)
        box = tuple(slice(max(0, a), a + s) for a, s in zip(spec.start, spec.size, strict=True))
        covered[spec.case_id][box] += 1
    for cid, cov in covered.items():
        assert cov.min() >= 1, f"case {cid} has uncovered voxels"
    starts = sliding_window_starts((48,), (24,), 0.5)
    assert starts[0].tolist() == [0, 12, 24]


def test_whole_volumes(ds):
    sampler = WholeVolumes()
    specs = [sampler.spec(ds, 0, 0, p) for p in range(sampler.epoch_length(ds))]
    assert [s.case_id for s in specs] == ["A", "B", "C"]
    assert [s.size for s in specs] == [tuple(s) for s in ds.shapes.tolist()]

"""PatchStream: interrupted-then-resumed streams equal uninterrupted ones; state checks; prefetch."""

import numpy as np
import pytest

from hcc_shards.read import PatchStream, RandomPatches, SlidingWindows, open_dataset

pytestmark = pytest.mark.reader_env

PATCH = (8, 24, 24)


@pytest.fixture(scope="module")
def ds(mini_root):
    return open_dataset(mini_root)


def _stream(ds, **kw):
    sampler = kw.pop("sampler", RandomPatches(PATCH, samples_per_epoch=14))
    return PatchStream(ds, sampler, seed=kw.pop("seed", 3), **kw)


def _take(stream, n):
    out = []
    for patch in stream:
        out.append(patch)
        if len(out) == n:
            break
    return out


def _same(a, b):
    assert [p.spec for p in a] == [p.spec for p in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.label, y.label)


def test_interrupted_then_resumed_equals_uninterrupted(ds):
    full = _stream(ds, threads=2)
    reference = list(full) + list(full)  # two epochs
    assert full.epoch == 2 and full.position == 0

    first = _stream(ds, threads=2)
    head = _take(first, 9)  # stop inside epoch 0
    state = first.state_dict()
    assert (state["epoch"], state["position"]) == (0, 9)
    resumed = _stream(ds, threads=0)  # another process would start from scratch
    resumed.load_state_dict(state)
    tail = list(resumed) + list(resumed)
    _same(head + tail[: len(reference) - 9], reference)


def test_resume_with_more_ranks_continues_the_global_order(ds):
    reference = [p.spec.position for p in _stream(ds, threads=0)]
    assert reference == list(range(14))
    single = _stream(ds, threads=0)
    _take(single, 6)
    state = single.state_dict()
    ranks = []
    for rank in range(2):
        s = _stream(ds, threads=0, rank=rank, world_size=2)
        s.load_state_dict(state)
        ranks.append([p.spec for p in s])
    assert len(ranks[0]) == len(ranks[1]) == 4
    positions = sorted(sp.position for r in ranks for sp in r)
    assert positions == list(range(6, 14))
    oracle = _stream(ds, threads=0)
    assert {sp.position: sp for r in ranks for sp in r} == {p: oracle.spec(0, p) for p in range(6, 14)}


def test_state_mismatch_names_the_field(ds):
    state = _stream(ds).state_dict()
    with pytest.raises(ValueError, match=r"seed: saved 3, current 4"):
        _stream(ds, seed=4).load_state_dict(state)
    other = _stream(ds, sampler=RandomPatches((8, 16, 16), samples_per_epoch=14))
    with pytest.raises(ValueError, match=r"sampler: saved .*\[8,24,24\].*current .*\[8,16,16\]"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match=r"dataset: saved '[0-9a-f]{16}', current"):
        _stream(ds.filter(split="train")).load_state_dict(state)


def test_finite_sampler_pads_with_marked_repeats(ds):
    sampler = SlidingWindows(PATCH, overlap=0.0)
    n = sampler.epoch_length(ds)
    per_rank = [list(_stream(ds, sampler=sampler, rank=r, world_size=4, threads=0)) for r in range(4)]
    assert len({len(r) for r in per_rank}) == 1
    real = [p for r in per_rank for p in r if not p.spec.padding]
    assert sorted(p.spec.position for p in real) == list(range(n))
    pads = [p for r in per_rank for p in r if p.spec.padding]
    assert len(pads) == -(-n // 4) * 4 - n
    dropped = [
        list(_stream(ds, sampler=sampler, rank=r, world_size=4, uneven="drop", threads=0)) for r in range(4)
    ]
    assert sum(len(r) for r in dropped) == n // 4 * 4
    assert not any(p.spec.padding for r in dropped for p in r)


def test_batches_and_replaced_worker_discovery(ds):
    halves = []
    for worker in range(2):
        s = _stream(ds, threads=0, worker_info=lambda w=worker: (w, 2))
        halves.append([p.spec.position for p in s])
    assert sorted(halves[0] + halves[1]) == list(range(14))
    assert halves[0] == [0, 2, 4, 6, 8, 10, 12]
    batch = next(iter(_stream(ds, threads=2).batches(4)))
    assert batch["image"].shape == (4, *PATCH) and batch["image"].dtype == np.int16
    assert batch["position"].tolist() == [0, 1, 2, 3]

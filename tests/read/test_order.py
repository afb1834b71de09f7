"""Assignment of positions to (rank, worker): no duplicates, equal counts, prefix resume."""

import itertools

import numpy as np
import pytest

from hcc_shards.read import STATE_VERSION, ReaderState, assign_positions, per_rank_count

pytestmark = pytest.mark.reader_env


@pytest.mark.parametrize(
    ("world", "workers", "batch"), [(1, 1, 1), (1, 3, 2), (2, 2, 3), (3, 1, 4), (4, 3, 1), (8, 2, 5)]
)
@pytest.mark.parametrize("uneven", ["pad", "drop"])
@pytest.mark.parametrize("length", [1, 37, 100])
def test_no_duplicates_and_equal_counts(world, workers, batch, uneven, length):
    per_rank = []
    everything = []
    for rank in range(world):
        mine = [
            assign_positions(
                start=0,
                length=length,
                rank=rank,
                world_size=world,
                worker=w,
                num_workers=workers,
                batch_size=batch,
                uneven=uneven,
            )
            for w in range(workers)
        ]
        flat = np.concatenate(mine)
        per_rank.append(len(flat))
        everything.extend(flat.tolist())
    assert len(everything) == len(set(everything)), "a position is read twice"
    assert len(set(per_rank)) == 1, f"ranks read different counts: {per_rank}"
    expected = per_rank_count(0, length, world, uneven)
    assert per_rank[0] == expected
    assert expected == (-(-length // world) if uneven == "pad" else length // world)
    # The union is a prefix of the positions: nothing skipped.
    assert sorted(everything) == list(range(len(everything)))


def test_worker_order_matches_dataloader_round_robin():
    # A DataLoader takes one batch from each worker in turn; the interleaved result is rank order.
    world, rank, workers, batch, length = 3, 1, 2, 2, 40
    per_worker = [
        assign_positions(
            start=0,
            length=length,
            rank=rank,
            world_size=world,
            worker=w,
            num_workers=workers,
            batch_size=batch,
        ).tolist()
        for w in range(workers)
    ]
    batches = [[ws[i : i + batch] for i in range(0, len(ws), batch)] for ws in per_worker]
    interleaved = []
    for group in itertools.zip_longest(*batches):
        for b in group:
            if b:
                interleaved.extend(b)
    alone = assign_positions(start=0, length=length, rank=rank, world_size=world).tolist()
    assert interleaved == alone
    assert alone == list(range(rank, 42, world))  # pad: 14 per rank, the last one past the end


@pytest.mark.parametrize(("before", "after"), [(2, 3), (4, 1), (1, 2)])
def test_resume_with_another_world_size_covers_the_rest_once(before, after):
    length, consumed_each = 50, 7
    start = consumed_each * before
    done = set(range(start))
    rest = np.concatenate(
        [
            assign_positions(start=start, length=length, rank=r, world_size=after, uneven="drop")
            for r in range(after)
        ]
    ).tolist()
    assert not done & set(rest)
    assert sorted(rest) == list(range(start, start + len(rest)))
    assert len(rest) == (length - start) // after * after


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        assign_positions(start=0, length=3, rank=2, world_size=2)
    with pytest.raises(ValueError, match="uneven must be 'pad' or 'drop', got 'x'"):
        per_rank_count(0, 3, 1, "x")  # type: ignore[arg-type]


def test_reader_state_roundtrip_and_mismatch():
    state = ReaderState(STATE_VERSION, "abc", '{"kind":"x"}', 1, "pad", 2, 10, 2, 4, 8)
    assert ReaderState.from_dict(state.to_dict()) == state
    other = ReaderState(STATE_VERSION, "abd", '{"kind":"x"}', 2, "pad", 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match=r"dataset: saved 'abc', current 'abd'; seed: saved 1, current 2"):
        state.check_matches(other)
    bad = state.to_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version 99 is not supported"):
        ReaderState.from_dict(bad)
    with pytest.raises(ValueError, match=r"missing \['seed'\], unknown \['extra'\]"):
        ReaderState.from_dict({k: v for k, v in state.to_dict().items() if k != "seed"} | {"extra": 1})

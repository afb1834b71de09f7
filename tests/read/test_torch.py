"""A real torch DataLoader with worker processes, persistent workers, ranks and resume."""

import pytest

torch = pytest.importorskip("torch")

from hcc_shards.read import PatchStream, RandomPatches, open_dataset  # noqa: E402
from hcc_shards.read.torch import PatchDataset, ResumableLoader, distributed_rank  # noqa: E402

pytestmark = pytest.mark.reader_env

PATCH = (8, 24, 24)
N = 12


def _loader(root, *, num_workers, rank=0, world_size=1, batch_size=2, **kw):
    ds = open_dataset(root)
    stream = PatchStream(
        ds, RandomPatches(PATCH, samples_per_epoch=N), seed=7, rank=rank, world_size=world_size, threads=1
    )
    return ResumableLoader(
        PatchDataset(stream),
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        multiprocessing_context="fork" if num_workers else None,
        **kw,
    )


def _positions(batches):
    return [int(p) for b in batches for p in b["position"]]


def test_dataloader_two_persistent_workers_epochs_and_resume(mini_root):
    loader = _loader(mini_root, num_workers=2)
    epoch0 = list(loader)
    epoch1 = list(loader)
    assert _positions(epoch0) == list(range(N)) and _positions(epoch1) == list(range(N))
    assert loader.epoch == 2
    b = epoch0[0]
    assert b["image"].dtype == torch.int16 and tuple(b["image"].shape) == (2, *PATCH)
    assert b["label"].dtype == torch.uint8 and len(b["case_id"]) == 2
    # Epoch 1 draws other patches than epoch 0.
    assert not all(torch.equal(x["start"], y["start"]) for x, y in zip(epoch0, epoch1, strict=True))

    reference = _loader(mini_root, num_workers=0)
    ref_batches = list(reference)

    interrupted = _loader(mini_root, num_workers=2)
    head = []
    for batch in interrupted:
        head.append(batch)
        if len(head) == 3:
            break
    state = interrupted.state_dict()
    assert (state["epoch"], state["position"], state["num_workers"]) == (0, 6, 2)
    resumed = _loader(mini_root, num_workers=1, batch_size=3)  # other workers and batch size
    resumed.load_state_dict(state)
    tail = list(resumed)
    got = torch.cat([b["image"] for b in head + tail])
    want = torch.cat([b["image"] for b in ref_batches])
    assert torch.equal(got, want)
    assert _positions(head + tail) == list(range(N))
    assert resumed.epoch == 1 and resumed.state_dict()["position"] == 0


def test_ranks_split_without_duplicates(mini_root):
    per_rank = [_positions(list(_loader(mini_root, num_workers=2, rank=r, world_size=3))) for r in range(3)]
    assert [len(p) for p in per_rank] == [4, 4, 4]
    assert sorted(p for rank in per_rank for p in rank) == list(range(N))


def test_rank_comes_from_torch_distributed(tmp_path):
    import torch.distributed as dist

    assert distributed_rank(1, 3) == (1, 3)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        assert distributed_rank(1, 3) == (0, 1)
    finally:
        dist.destroy_process_group()


def test_loader_rejects_other_datasets():
    with pytest.raises(TypeError, match="needs a PatchDataset, got list"):
        ResumableLoader([1, 2, 3])

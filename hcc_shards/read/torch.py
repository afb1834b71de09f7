"""PyTorch adapter: an IterableDataset over a PatchStream and a DataLoader that can resume.

This is the only reader module that imports torch. Use :class:`ResumableLoader` (a
``torch.utils.data.DataLoader``) around :class:`PatchDataset`: it tells the workers which epoch and
position to start from (through a small shared-memory block, so it also reaches persistent
workers), counts the samples it hands out, and gives ``state_dict()`` / ``load_state_dict()``.
Ranks come from ``torch.distributed`` when it is initialised, else from the stream.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hcc_shards.read.order import ReaderState
from hcc_shards.read.stream import PatchStream, WorkerInfo

_EPOCH, _START, _BATCH, _RANK, _WORLD = range(5)


def torch_worker_info() -> tuple[int, int]:
    """(worker id, workers) of the calling DataLoader worker; (0, 1) in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def distributed_rank(default_rank: int, default_world: int) -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else the defaults."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return default_rank, default_world


class PatchDataset(IterableDataset):
    """Yields dicts: ``image`` (int16 tensor z, y, x), ``label`` (uint8 tensor), ``annotated`` (bool
    tensor, one per foreground label: whether the case annotates it, for masked partial-label losses),
    ``case_id`` (str), ``position`` (int), ``start`` (int64 tensor (3,)), ``padding`` (bool) and
    ``affine`` (float64 tensor (4, 4), LPS, patch index (z, y, x) -> world). ``transform`` (if given)
    receives each such dict, torch tensors already, in the DataLoader worker, before collation; it
    returns the dict to collate and must keep ``position``."""

    def __init__(
        self,
        stream: PatchStream,
        *,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        worker_info: WorkerInfo = torch_worker_info,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.transform = transform
        self.worker_info = worker_info
        """Worker discovery; tests may replace it."""
        # Read by every worker at the start of each pass: epoch, start position, batch size, rank, world.
        self.shared: Any = multiprocessing.RawArray("q", 5)
        self.shared[:] = [stream.epoch, stream.position, 1, stream.rank, stream.world_size]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if multiprocessing.context.get_spawning_popen() is None:
            # Not going to a new DataLoader worker: shared memory cannot travel, a snapshot can.
            state["shared"] = list(self.shared)
        return state

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, start, batch, rank, world = (int(v) for v in self.shared[:5])
        worker, num_workers = self.worker_info()
        for patch in self.stream.generate(
            epoch=epoch,
            start=start,
            rank=rank,
            world_size=world,
            worker=worker,
            num_workers=num_workers,
            batch_size=batch,
        ):
            item = patch.as_dict()
            item["image"] = torch.from_numpy(item["image"])
            item["label"] = torch.from_numpy(item["label"])
            item["start"] = torch.from_numpy(item["start"])
            item["affine"] = torch.tensor(item["affine"], dtype=torch.float64)  # the affine is read-only
            item["annotated"] = torch.from_numpy(item["annotated"])
            if "channel_present" in item:  # a stream with channels: image is (C, z, y, x)
                item["channel_present"] = torch.from_numpy(item["channel_present"])
            yield self.transform(item) if self.transform is not None else item


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`PatchDataset` with ``set_epoch``, ``state_dict``, ``load_state_dict``.

    Each pass yields the rest of the current epoch; after a complete pass the next one starts the
    next epoch. The state saved on any rank is the same in lock-step training (it holds the global
    position), and it can be loaded with another number of ranks or workers.
    """

    def __init__(self, dataset: PatchDataset, batch_size: int | None = 1, **kwargs: Any) -> None:
        if not isinstance(dataset, PatchDataset):
            raise TypeError(f"ResumableLoader needs a PatchDataset, got {type(dataset).__name__}")
        super().__init__(dataset, batch_size=batch_size, **kwargs)
        dataset.shared[_BATCH] = batch_size or 1
        self._epoch = dataset.stream.epoch
        self._position = dataset.stream.position
        self._world = dataset.stream.world_size

    @property
    def epoch(self) -> int:
        """Epoch of the next (or current) pass."""
        return self._epoch

    @property
    def position(self) -> int:
        """Global positions of the current epoch already handed out (on every rank together)."""
        return self._position

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first position at the next pass."""
        self._epoch, self._position = int(epoch), 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        ds: PatchDataset = self.dataset  # type: ignore[assignment]
        rank, world = distributed_rank(ds.stream.rank, ds.stream.world_size)
        self._world = world
        epoch, start = self._epoch, self._position
        ds.shared[:] = [epoch, start, self.batch_size or 1, rank, world]
        consumed = 0
        for batch in super().__iter__():
            consumed += _batch_len(batch)
            self._position = start + consumed * world
            yield batch
        if self._epoch == epoch:
            self.set_epoch(epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        """Resume state (see :class:`hcc_shards.read.order.ReaderState`)."""
        ds: PatchDataset = self.dataset  # type: ignore[assignment]
        base = ds.stream.current_state(num_workers=max(1, self.num_workers), batch_size=self.batch_size or 1)
        return replace(base, epoch=self._epoch, position=self._position, world_size=self._world).to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` stopped; raises ValueError naming any mismatched setting."""
        ds: PatchDataset = self.dataset  # type: ignore[assignment]
        saved = ReaderState.from_dict(state)
        saved.check_matches(ds.stream.current_state())
        self._epoch, self._position = int(saved.epoch), int(saved.position)


def _batch_len(batch: Any) -> int:
    if isinstance(batch, dict) and "position" in batch:
        pos = batch["position"]
        return 1 if isinstance(pos, int) else len(pos)
    raise TypeError("ResumableLoader batches must be dicts with a 'position' entry (keep it in transform)")

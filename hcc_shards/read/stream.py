"""The sample stream: a sampler, a split across ranks and workers, and bounded concurrent reads.

:class:`PatchStream` is a plain Python iterable of :class:`Patch` (numpy arrays), for JAX or any
framework; :mod:`hcc_shards.read.torch` wraps it for PyTorch. The stream of a rank is a pure function
of (dataset, sampler, seed, epoch, position): :meth:`PatchStream.generate` yields it for any
(epoch, start, rank, worker) without touching the stream's own progress counters.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.read.array import FetchedRegions
from hcc_shards.read.dataset import IMAGE_PAD, LABEL_PAD, Dataset
from hcc_shards.read.order import STATE_VERSION, ReaderState, Uneven, assign_positions, sampler_key
from hcc_shards.read.sampling import PatchSpec, Sampler

WorkerInfo = Callable[[], tuple[int, int]]
"""Returns (worker id, number of workers) of the calling process."""


def single_worker() -> tuple[int, int]:
    """Worker discovery when nothing splits a rank: worker 0 of 1."""
    return 0, 1


@dataclass(frozen=True)
class Patch:
    """One sample read from the dataset."""

    image: np.ndarray
    """int16 HU (z, y, x); -1024 outside the volume."""
    label: np.ndarray
    """uint8 labels (z, y, x); 0 outside the volume."""
    spec: PatchSpec
    """Which case and box this is."""
    affine: np.ndarray | None = None
    """float64 (4, 4): patch index (k, j, i, 1) -> LPS mm of the voxel centre (docs/READER.md,
    "Geometry"); the case's affine moved to the patch start."""

    annotated: np.ndarray | None = None
    """bool (labels,): whether the case annotates each foreground label, in label-value order
    (``Dataset.label_names``). Where False the label array says nothing of that label (its voxels
    read 0, unknown rather than background): mask that channel out of the loss."""
    phases: tuple[str, ...] | None = None
    """With ``PatchStream(channels=...)``: the phase of each channel of ``image`` (C, z, y, x)
    (docs/PHASES.md); None for a single-channel image (z, y, x)."""
    channel_present: np.ndarray | None = None
    """bool (C,): whether each channel was stored for this case (False: it reads -1024 everywhere)."""

    @property
    def geometry(self) -> Geometry:
        """The patch's grid: its shape and :attr:`affine`."""
        if self.affine is None:
            raise ValueError(
                f"patch {self.spec.position} of {self.spec.case_id!r} was made without an affine"
            )
        return Geometry(shape=self.image.shape[-3:], affine=self.affine)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for collate functions): image, label, annotated, case_id, position, start, padding,
        affine."""
        return {
            "image": self.image,
            "label": self.label,
            "annotated": self.annotated,
            "case_id": self.spec.case_id,
            "position": self.spec.position,
            "start": np.asarray(self.spec.start, dtype=np.int64),
            "padding": self.spec.padding,
            "affine": self.affine,
            **self._channel_items(),
        }

    def _channel_items(self) -> dict[str, Any]:
        if self.phases is None:
            return {}
        return {"phases": list(self.phases), "channel_present": self.channel_present}


ALL_CHANNELS = "all"
"""``PatchStream(channels=ALL_CHANNELS)``: every stored channel of each case, in stored order."""


def channel_plan(case: Any, channels: str | tuple[str, ...]) -> tuple[list[int | None], tuple[str, ...]]:
    """(Channel index per output channel, None where the case lacks it; the phase of each).

    ``all``: every channel the case stores (just the image in a build without phases); a tuple of
    phase names: per name the case's channel with that phase (:meth:`Case.channel_for`)."""
    entries = case.phases
    if channels == ALL_CHANNELS:
        if not entries:
            return [0], ("unknown",)
        return list(range(len(entries))), tuple(str(e.get("phase") or "unknown") for e in entries)
    return [case.channel_for(p) for p in channels], tuple(channels)


class PatchStream:
    """Samples of one rank, in order, read ahead by a bounded pool of threads.

    Iterating yields the rest of the current epoch from the current position, counts what it
    yields (for :meth:`state_dict`), and moves to the next epoch when the epoch is done.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: Sampler,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        uneven: Uneven = "pad",
        prefetch: int = 8,
        threads: int = 4,
        fetch_ahead: int = 1,
        worker_info: WorkerInfo = single_worker,
        channels: str | Sequence[str] | None = None,
    ) -> None:
        if uneven not in ("pad", "drop"):
            raise ValueError(f"uneven must be 'pad' or 'drop', got {uneven!r}")
        if prefetch < 0 or threads < 0 or fetch_ahead < 0:
            raise ValueError(
                f"prefetch, threads and fetch_ahead must be >= 0, got {prefetch}, {threads} and {fetch_ahead}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.dataset = dataset
        self.sampler = sampler
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.uneven: Uneven = uneven
        self.prefetch = int(prefetch)
        """Samples read ahead of the consumer (0: read on demand)."""
        self.threads = int(threads)
        """Reader threads (0: read in the consuming thread)."""
        self.fetch_ahead = int(fetch_ahead)
        """When reading in the consuming thread (``threads=0`` or ``prefetch=0``) from an object store:
        samples whose bytes background I/O threads fetch ahead (concurrently, up to
        ``IOSettings.max_batches_in_flight``) while the consumer decodes (0: none). Decoding never
        leaves the consuming thread. Local files are always read on demand."""
        self.worker_info = worker_info
        """Worker discovery; replaced by the PyTorch adapter and by tests."""
        if isinstance(channels, str) and channels != ALL_CHANNELS:
            raise ValueError(
                f"channels must be None, {ALL_CHANNELS!r} or a list of phase names, got {channels!r}"
            )
        self.channels: str | tuple[str, ...] | None = (
            channels if channels is None or isinstance(channels, str) else tuple(str(c) for c in channels)
        )
        """None: image patches (z, y, x) of the annotated image; ``all`` or phase names: (C, z, y, x)
        patches of its phase channels (docs/PHASES.md)."""
        self.epoch = 0
        """Current epoch."""
        self.position = 0
        """Global positions of the current epoch already consumed."""
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = -1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"], state["_pool_pid"] = None, -1
        return state

    # -- the pure part ---------------------------------------------------------------------------

    @property
    def epoch_length(self) -> int:
        """Global positions in one epoch (before evening out the ranks)."""
        return self.sampler.epoch_length(self.dataset)

    def spec(self, epoch: int, position: int) -> PatchSpec:
        """The sample at a global position (padding positions of finite samplers repeat the start)."""
        length = self.epoch_length
        if self.sampler.finite and position >= length:
            spec = self.sampler.spec(self.dataset, self.seed, epoch, position % length)
            return PatchSpec(spec.position, spec.case_id, spec.start, spec.size, spec.label, padding=True)
        return self.sampler.spec(self.dataset, self.seed, epoch, position)

    def positions(
        self, *, epoch_start: int, rank: int, world_size: int, worker: int, num_workers: int, batch_size: int
    ) -> np.ndarray:
        """Global positions this (rank, worker) reads from ``epoch_start`` on (see hcc_shards.read.order)."""
        return assign_positions(
            start=epoch_start,
            length=self.epoch_length,
            rank=rank,
            world_size=world_size,
            worker=worker,
            num_workers=num_workers,
            batch_size=batch_size,
            uneven=self.uneven,
        )

    def read(self, spec: PatchSpec) -> Patch:
        """Read one sample's image and label."""
        return self._assemble(spec, self._fetch(spec))

    def _fetch(self, spec: PatchSpec) -> FetchedRegions:
        case = self.dataset.case(spec.case_id)
        extra: list[int] = []
        if self.channels is not None:
            plan, _ = channel_plan(case, self.channels)
            extra = [i for i in plan if i]
        return case.fetch_region(
            spec.start, spec.stop, image_pad=IMAGE_PAD, label_pad=LABEL_PAD, channels=extra
        )

    def _assemble(self, spec: PatchSpec, fetched: FetchedRegions) -> Patch:
        image, label, *stored = fetched.assemble()
        case = self.dataset.case(spec.case_id)
        # The case's zarr.json (which holds its affine) was read to fetch the region: no extra I/O.
        affine = case.geometry.region(spec.start, spec.size).affine
        phases = present = None
        if self.channels is not None:
            plan, phases = channel_plan(case, self.channels)
            by_index = dict(zip([i for i in plan if i], stored, strict=True))
            planes = [
                image if i == 0 else by_index[i] if i is not None else np.full_like(image, IMAGE_PAD)
                for i in plan
            ]
            image = np.stack(planes)
            present = np.array([i is not None for i in plan], dtype=bool)
        return Patch(
            image=image,
            label=label,
            spec=spec,
            affine=affine,
            annotated=annotated_mask(self.dataset, spec.case_id),
            phases=phases,
            channel_present=present,
        )

    def generate(
        self,
        *,
        epoch: int,
        start: int,
        rank: int,
        world_size: int,
        worker: int = 0,
        num_workers: int = 1,
        batch_size: int = 1,
    ) -> Iterator[Patch]:
        """The samples of (rank, worker) for ``epoch`` after ``start`` consumed positions, read ahead."""
        positions = self.positions(
            epoch_start=start,
            rank=rank,
            world_size=world_size,
            worker=worker,
            num_workers=num_workers,
            batch_size=batch_size,
        )
        specs = (self.spec(epoch, int(p)) for p in positions)
        pool = self._executor()
        if pool is None or self.prefetch == 0:
            if self.fetch_ahead and not self.dataset.store.is_local:
                yield from self._fetching_ahead(specs)
                return
            for spec in specs:
                yield self.read(spec)
            return
        pending: collections.deque[Future[Patch]] = collections.deque()
        try:
            for spec in specs:
                pending.append(pool.submit(self.read, spec))
                if len(pending) > self.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    def _fetching_ahead(self, specs: Iterator[PatchSpec]) -> Iterator[Patch]:
        """Decode sample n in this thread while I/O threads fetch samples n+1 .. n+fetch_ahead."""
        io = _io_executor()
        pending: collections.deque[tuple[PatchSpec, Future[FetchedRegions]]] = collections.deque()
        try:
            for spec in specs:
                pending.append((spec, io.submit(self._fetch, spec)))
                if len(pending) > self.fetch_ahead:
                    done, fut = pending.popleft()
                    yield self._assemble(done, fut.result())
            while pending:
                done, fut = pending.popleft()
                yield self._assemble(done, fut.result())
        finally:
            for _, fut in pending:
                fut.cancel()

    def _executor(self) -> ThreadPoolExecutor | None:
        if self.threads == 0:
            return None
        if self._pool is None or self._pool_pid != os.getpid():
            # Threads do not survive a fork: each process makes its own pool.
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hcc-shards-read")
            self._pool_pid = os.getpid()
        return self._pool

    # -- progress and resume ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Patch]:
        worker, num_workers = self.worker_info()
        epoch, start = self.epoch, self.position
        stream = self.generate(
            epoch=epoch,
            start=start,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            num_workers=num_workers,
        )
        for consumed, patch in enumerate(stream, start=1):
            if num_workers == 1:
                self.position = start + consumed * self.world_size
            yield patch
        if num_workers == 1 and self.epoch == epoch:
            self.set_epoch(epoch + 1)

    def batches(self, batch_size: int, *, drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Iterate in stacked batches: ``image`` (B, z, y, x), ``label``, ``position``, ``start``, ``padding``."""
        buf: list[Patch] = []
        for patch in self:
            buf.append(patch)
            if len(buf) == batch_size:
                yield stack(buf)
                buf = []
        if buf and not drop_last:
            yield stack(buf)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first position."""
        self.epoch, self.position = int(epoch), 0

    def current_state(self, *, num_workers: int = 1, batch_size: int = 1) -> ReaderState:
        """The stream's settings and progress as a :class:`ReaderState`."""
        return ReaderState(
            version=STATE_VERSION,
            dataset=self.dataset.fingerprint(),
            sampler=sampler_key(self.sampler.settings()),
            seed=self.seed,
            uneven=self.uneven,
            epoch=self.epoch,
            position=self.position,
            world_size=self.world_size,
            num_workers=num_workers,
            batch_size=batch_size,
        )

    def state_dict(self) -> dict[str, Any]:
        """Resume state (a plain dict, see :class:`ReaderState`)."""
        return self.current_state().to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` stopped; raises ValueError naming any mismatched setting."""
        saved = ReaderState.from_dict(state)
        saved.check_matches(self.current_state())
        self.epoch, self.position = int(saved.epoch), int(saved.position)

    def close(self) -> None:
        """Stop the reader threads of this process."""
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None


_IO_THREADS = 4
"""Background I/O threads per process for ``fetch_ahead`` (fetches only: they wait on storage)."""
_IO: list[Any] = [-1, None]
"""(pid, executor) of this process's background I/O threads."""
_IO_LOCK = threading.Lock()


def _io_executor() -> ThreadPoolExecutor:
    """The process's I/O threads (made on first use, again after a fork), shared by all streams.

    A stream has at most ``fetch_ahead`` fetches in flight, and the store at most
    ``IOSettings.max_batches_in_flight``."""
    with _IO_LOCK:
        if _IO[0] != os.getpid():
            _IO[0] = os.getpid()
            _IO[1] = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="hcc-shards-fetch")
        return _IO[1]


def annotated_mask(dataset: Dataset, case_id: str) -> np.ndarray:
    """bool (labels,) in label-value order: which foreground labels the case annotates."""
    annotated = set(dataset.case(case_id).annotated_labels)
    return np.array([name in annotated for _, name in dataset.info.labels], dtype=bool)


def stack(patches: list[Patch]) -> dict[str, np.ndarray]:
    """Stack patches of one size into a batch of numpy arrays (``affine``: (B, 4, 4) float64,
    ``annotated``: (B, labels) bool)."""
    return {
        "image": np.stack([p.image for p in patches]),
        "label": np.stack([p.label for p in patches]),
        "annotated": np.stack([p.annotated for p in patches]),
        "position": np.array([p.spec.position for p in patches], dtype=np.int64),
        "start": np.array([p.spec.start for p in patches], dtype=np.int64),
        "padding": np.array([p.spec.padding for p in patches], dtype=bool),
        "case_id": np.array([p.spec.case_id for p in patches]),
        "affine": np.stack([p.geometry.affine for p in patches]),
        **(
            {"channel_present": np.stack([p.channel_present for p in patches])}
            if patches and patches[0].channel_present is not None
            else {}
        ),
    }

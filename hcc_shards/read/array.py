"""Lazy, read-only Zarr v3 arrays: reading a region fetches and decodes only the chunks it touches."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hcc_shards.errors import CorruptChunkError
from hcc_shards.read.chunks import EMPTY, ArrayMeta, decode_chunk, parse_shard_index
from hcc_shards.read.io import ByteStore

_MISSING = object()


class ShardIndexCache:
    """Parsed shard indexes, shared by all arrays of a dataset (bounded, least recently used out)."""

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[str, tuple[int, ...]], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, tuple[int, ...]]) -> Any:
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, tuple[int, ...]], value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"max_entries": self.max_entries}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_entries"])  # type: ignore[misc]


class LazyArray:
    """One stored array of a case. ``arr[...]`` and :meth:`read` return numpy arrays."""

    def __init__(
        self, store: ByteStore, rel: str, meta: ArrayMeta, *, name: str, index_cache: ShardIndexCache
    ) -> None:
        self.store = store
        """Store of the dataset version."""
        self.rel = rel.strip("/")
        """Path of the array relative to the store root."""
        self.meta = meta
        """Parsed ``zarr.json``."""
        self.name = name
        """Human name used in errors, e.g. ``case 'HCC_001' image``."""
        self._index_cache = index_cache

    @property
    def shape(self) -> tuple[int, ...]:
        return self.meta.shape

    @property
    def dtype(self) -> np.dtype:
        """Native-order element type of the returned arrays."""
        return self.meta.dtype.newbyteorder("=")

    @property
    def ndim(self) -> int:
        return len(self.meta.shape)

    def __repr__(self) -> str:
        return f"LazyArray({self.name}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> np.ndarray:
        start, stop, post = _basic_index(key, self.shape)
        return self.read(start, stop)[post]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.read((0,) * self.ndim, self.shape)
        return out if dtype is None else out.astype(dtype)

    def read(
        self, start: Sequence[int], stop: Sequence[int], *, pad_value: int | float | None = None
    ) -> np.ndarray:
        """The region ``[start, stop)``; parts outside the array are ``pad_value`` (default: fill)."""
        return read_regions([RegionRequest(self, tuple(start), tuple(stop), pad_value)])[0]

    def object_rel(self, grid_coords: Sequence[int]) -> str:
        return f"{self.rel}/{self.meta.object_key(grid_coords)}"


@dataclass(frozen=True)
class RegionRequest:
    """A region of one array to read, as part of a batch."""

    array: LazyArray
    """The array."""
    start: tuple[int, ...]
    """First index per axis (may be negative)."""
    stop: tuple[int, ...]
    """One past the last index per axis (may exceed the shape)."""
    pad_value: int | float | None = None
    """Value outside the array; None means the array's fill value."""


class ChunkRead(NamedTuple):
    """One stored chunk that a batch of regions needs."""

    request: int
    """Index of the region request it serves."""
    chunk: tuple[int, ...]
    """Global chunk coordinates (in units of the inner chunk shape)."""
    src: tuple[slice, ...]
    """Part of the decoded chunk inside the region."""
    dst: tuple[slice, ...]
    """Where that part goes in the region's output array."""
    rel: str
    """Object holding it (a shard, or the chunk itself when unsharded), relative to the store."""
    start: int | None
    """First byte inside a shard; None when the chunk is a whole object."""
    end: int | None
    """One past its last byte inside a shard; None when the chunk is a whole object."""


def _axis_parts(s0: int, s1: int, n: int, c: int, per_shard: int) -> list[tuple[int, int, int, slice, slice]]:
    """(chunk, shard, inner index, src, dst) for each chunk along one axis that ``[s0, s1)`` touches."""
    lo, hi = max(s0, 0), min(s1, n)
    out = []
    for ci in range(lo // c, (hi - 1) // c + 1) if lo < hi else ():
        c0 = ci * c
        a0, a1 = max(lo, c0), min(hi, c0 + c)
        out.append((ci, ci // per_shard, ci % per_shard, slice(a0 - c0, a1 - c0), slice(a0 - s0, a1 - s0)))
    return out


def plan_reads(requests: Sequence[RegionRequest]) -> list[ChunkRead | tuple[int, tuple[slice, ...]]]:
    """The stored chunks the regions touch; fetches the shard indexes that are not cached yet.

    Chunks that are not stored (absent shards, empty index entries) come back as
    ``(request, dst)`` pairs: that part of the output is fill.
    """
    axes_of = []
    for req in requests:
        arr = req.array
        if len(req.start) != arr.ndim or len(req.stop) != arr.ndim:
            raise ValueError(
                f"{arr.name}: region start {req.start} / stop {req.stop} must have {arr.ndim} values"
            )
        if any(int(b) < int(a) for a, b in zip(req.start, req.stop, strict=True)):
            raise ValueError(f"{arr.name}: region stop {req.stop} is before start {req.start}")
        meta = arr.meta
        per_shard = meta.chunks_per_shard if meta.sharded else (1,) * arr.ndim
        axes_of.append(
            [
                _axis_parts(int(a), int(b), n, c, p)
                for a, b, n, c, p in zip(
                    req.start, req.stop, meta.shape, meta.chunk_shape, per_shard, strict=True
                )
            ]
        )
    indexes = _load_indexes(requests, axes_of)
    reads: list[ChunkRead | tuple[int, tuple[slice, ...]]] = []
    for r, (req, axes) in enumerate(zip(requests, axes_of, strict=True)):
        arr = req.array
        if not all(axes):
            continue
        if not arr.meta.sharded:
            for combo in itertools.product(*axes):
                chunk = tuple(c[0] for c in combo)
                src, dst = tuple(c[3] for c in combo), tuple(c[4] for c in combo)
                reads.append(ChunkRead(r, chunk, src, dst, arr.object_rel(chunk), None, None))
            continue
        cps = arr.meta.chunks_per_shard
        strides = [int(np.prod(cps[a + 1 :])) for a in range(len(cps))]
        # Fold each axis's share of the flat index in once; the product loop then only adds.
        folded = [
            [(ci, sh, inner * st, src, dst) for ci, sh, inner, src, dst in parts]
            for parts, st in zip(axes, strides, strict=True)
        ]
        objects: dict[tuple[int, ...], str] = {}
        for combo in itertools.product(*folded):
            shard = tuple([c[1] for c in combo])
            table = indexes[(arr.rel, shard)]
            entry = table[sum([c[2] for c in combo])] if table else None
            dst = tuple([c[4] for c in combo])
            if entry is None:
                reads.append((r, dst))
                continue
            obj = objects.get(shard)
            if obj is None:
                obj = objects[shard] = arr.object_rel(shard)
            offset, nbytes = entry
            reads.append(
                ChunkRead(
                    r,
                    tuple([c[0] for c in combo]),
                    tuple([c[3] for c in combo]),
                    dst,
                    obj,
                    offset,
                    offset + nbytes,
                )
            )
    return reads


def _allocate(req: RegionRequest) -> np.ndarray:
    """The output array; only the parts outside the array are written (with the pad value)."""
    arr = req.array
    start = [int(a) for a in req.start]
    stop = [int(b) for b in req.stop]
    out = np.empty([b - a for a, b in zip(start, stop, strict=True)], dtype=arr.dtype)
    pad = arr.meta.fill_value if req.pad_value is None else req.pad_value
    for axis, (a, b, n) in enumerate(zip(start, stop, arr.shape, strict=True)):
        lead = (slice(None),) * axis
        if a < 0:
            out[(*lead, slice(0, min(-a, b - a)))] = pad
        if b > n:
            out[(*lead, slice(max(0, n - a), b - a))] = pad
    return out


def read_regions(requests: Sequence[RegionRequest]) -> list[np.ndarray]:
    """Read several regions (of arrays in one store) with one batch of storage requests.

    Order of operations: 1. find the chunks each region touches, 2. fetch the shard indexes not yet
    cached, 3. fetch the bytes of every stored chunk at once, 4. verify and decode each chunk and
    copy its overlap into the output; unstored chunks become the fill value, voxels outside the
    array the pad value.
    """
    if not requests:
        return []
    reads = plan_reads(requests)
    outs = [_allocate(req) for req in requests]
    store = requests[0].array.store
    ranged: list[ChunkRead] = []
    whole: list[ChunkRead] = []
    for rd in reads:
        if not isinstance(rd, ChunkRead):
            outs[rd[0]][rd[1]] = requests[rd[0]].array.meta.fill_value
        elif rd.start is None:
            whole.append(rd)
        else:
            ranged.append(rd)
    blobs = store.read_ranges([(rd.rel, rd.start, rd.end) for rd in ranged])  # type: ignore[misc]
    for rd, blob in zip(ranged, blobs, strict=True):
        meta = requests[rd.request].array.meta
        try:
            if blob is None or len(blob) != rd.end - rd.start:  # type: ignore[operator]
                got = "missing object" if blob is None else f"{len(blob)} bytes"
                raise CorruptChunkError(f"the shard index points past the object ({got})")
            chunk = decode_chunk(meta, blob)
        except CorruptChunkError as exc:
            chunk = _reread(requests[rd.request].array, rd, exc)
        outs[rd.request][rd.dst] = chunk[rd.src]
    if whole:
        for rd, blob in zip(whole, store.read_many([rd.rel for rd in whole]), strict=True):
            arr = requests[rd.request].array
            if blob is None:
                outs[rd.request][rd.dst] = arr.meta.fill_value
                continue
            chunk = decode_chunk(arr.meta, blob, what=f"{arr.name}: chunk {rd.chunk} ({store.url(rd.rel)})")
            outs[rd.request][rd.dst] = chunk[rd.src]
    return outs


def _reread(arr: LazyArray, rd: ChunkRead, exc: CorruptChunkError) -> np.ndarray:
    """A cached copy may be torn: drop it and read once more; else raise naming the case."""
    s, e = int(rd.start), int(rd.end)  # type: ignore[arg-type]
    what = f"{arr.name}: chunk {rd.chunk} ({arr.store.url(rd.rel)} bytes {s}-{e})"
    if arr.store.has_cache:
        arr.store.discard_cached(rd.rel, s, e)
        again = arr.store.read_ranges([(rd.rel, s, e)])[0]
        if again is not None and len(again) == e - s:
            return decode_chunk(arr.meta, again, what=what)
    raise CorruptChunkError(f"{what}: {exc}") from exc


def _load_indexes(
    requests: Sequence[RegionRequest], axes_of: list[list[list[tuple[int, int, int, slice, slice]]]]
) -> dict[tuple[str, tuple[int, ...]], list[tuple[int, int] | None] | None]:
    """Flat (offset, nbytes) tables of every shard the regions touch, fetching the missing ones together."""
    found: dict[tuple[str, tuple[int, ...]], Any] = {}
    needed: dict[tuple[str, tuple[int, ...]], LazyArray] = {}
    for req, axes in zip(requests, axes_of, strict=True):
        arr = req.array
        if not arr.meta.sharded or not all(axes):
            continue
        for shard in itertools.product(*(sorted({p[1] for p in parts}) for parts in axes)):
            key = (arr.rel, shard)
            if key in found or key in needed:
                continue
            value = arr._index_cache.get(key)
            if value is _MISSING:
                needed[key] = arr
            else:
                found[key] = value
    if not needed:
        return found
    jobs: list[tuple[tuple[str, tuple[int, ...]], LazyArray, str, int, int]] = []
    for key, arr in needed.items():
        obj = arr.object_rel(key[1])
        n = arr.meta.index_nbytes
        if arr.meta.index_at_start:
            jobs.append((key, arr, obj, 0, n))
            continue
        try:
            size = int(arr.store.fs.size(arr.store.path(obj)))
        except FileNotFoundError:
            arr._index_cache.put(key, None)
            found[key] = None
            continue
        jobs.append((key, arr, obj, size - n, size))
    got = requests[0].array.store.read_ranges([(obj, s, e) for _, _, obj, s, e in jobs])
    for (key, arr, obj, s, e), blob in zip(jobs, got, strict=True):
        table = None
        if blob is not None:
            what = f"{arr.name}: {arr.store.url(obj)} bytes {s}-{e}"
            if len(blob) != e - s:
                raise CorruptChunkError(f"{what}: shard is {len(blob)} bytes, shorter than its index")
            parsed = parse_shard_index(arr.meta, blob, what=what).reshape(-1, 2)
            empty = (parsed[:, 0] == EMPTY) & (parsed[:, 1] == EMPTY)
            # Plain Python tuples: looked up once per chunk on the hot path.
            table = [
                None if gone else (int(o), int(n))
                for (o, n), gone in zip(parsed.tolist(), empty.tolist(), strict=True)
            ]
        arr._index_cache.put(key, table)
        found[key] = table
    return found


def _basic_index(
    key: Any, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[Any, ...]]:
    """numpy basic indexing -> (start, stop) of the bounding region and the index applied after."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(n for n, k in enumerate(key) if k is Ellipsis)
        fill = len(shape) - (len(key) - 1)
        key = key[:i] + (slice(None),) * fill + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: array is {len(shape)}-dimensional, got {len(key)}")
    key = key + (slice(None),) * (len(shape) - len(key))
    start, stop, post = [], [], []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, (int, np.integer)):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {int(k)} is out of bounds for axis of size {n}")
            start.append(i)
            stop.append(i + 1)
            post.append(0)
        elif isinstance(k, slice):
            a, b, step = k.indices(n)
            if step < 0:
                raise IndexError(f"negative slice steps are not supported, got {k}")
            b = max(a, b)
            start.append(a)
            stop.append(b)
            post.append(slice(None, None, step))
        else:
            raise IndexError(f"only integers, slices and Ellipsis are supported, got {type(k).__name__}")
    return tuple(start), tuple(stop), tuple(post)

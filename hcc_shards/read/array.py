"""Lazy, read-only Zarr v3 arrays: reading a region fetches and decodes only the chunks it touches."""

from __future__ import annotations

import collections
import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import crc32c as _crc32c
import numpy as np

from hcc_shards.errors import CorruptChunkError
from hcc_shards.read.chunks import ArrayMeta, blosc_module, decode_chunk, parse_shard_index, scratch
from hcc_shards.read.io import ByteStore
from hcc_shards.shard_index import ShardIndex

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
        # Per axis, the parts in each shard (usually one shard per axis: a patch is smaller).
        groups = [_by_shard(parts) for parts in axes]
        for combo in itertools.product(*groups):
            shard = tuple(g[0] for g in combo)
            _plan_shard(reads, r, arr, shard, [g[1] for g in combo], strides, indexes[(arr.rel, shard)])
    return reads


def _by_shard(parts: list[tuple[int, int, int, slice, slice]]) -> list[tuple[int, list]]:
    out: list[tuple[int, list]] = []
    for p in parts:
        if out and out[-1][0] == p[1]:
            out[-1][1].append(p)
        else:
            out.append((p[1], [p]))
    return out


def _plan_shard(
    reads: list[ChunkRead | tuple[int, tuple[slice, ...]]],
    r: int,
    arr: LazyArray,
    shard: tuple[int, ...],
    axes: list[list[tuple[int, int, int, slice, slice]]],
    strides: list[int],
    index: ShardIndex | None,
) -> None:
    """Append the reads of the chunks of one shard: every per-chunk lookup done at once in numpy."""
    dsts = list(itertools.product(*[[p[4] for p in parts] for parts in axes]))
    if index is None:
        reads.extend((r, dst) for dst in dsts)
        return
    # Flat inner-chunk index of every combination, in itertools.product order (C order).
    flat = np.zeros((), dtype=np.intp)
    for parts, st in zip(axes, strides, strict=True):
        flat = np.add.outer(flat, np.array([p[2] * st for p in parts], dtype=np.intp))
    flat = flat.ravel()
    starts, ends, present = index.byte_ranges(flat)
    chunks = itertools.product(*[[p[0] for p in parts] for parts in axes])
    srcs = itertools.product(*[[p[3] for p in parts] for parts in axes])
    obj = arr.object_rel(shard)
    for chunk, src, dst, s, e, ok in zip(chunks, srcs, dsts, starts, ends, present, strict=True):
        reads.append(ChunkRead(r, chunk, src, dst, obj, s, e) if ok else (r, dst))


def _allocate(req: RegionRequest, *, has_fill: bool = False) -> tuple[np.ndarray, bool]:
    """The output array, and whether it is already all fill value.

    Only the parts outside the array are written (with the pad value), unless the region has
    unstored chunks (``has_fill``) and the pad value equals the fill value: then the whole array
    starts as fill (one contiguous write instead of one strided write per unstored chunk).
    """
    arr = req.array
    start = [int(a) for a in req.start]
    stop = [int(b) for b in req.stop]
    shape = [b - a for a, b in zip(start, stop, strict=True)]
    fill = arr.meta.fill_value
    pad = fill if req.pad_value is None else req.pad_value
    if has_fill and pad == fill:
        return np.full(shape, fill, dtype=arr.dtype), True
    out = np.empty(shape, dtype=arr.dtype)
    for axis, (a, b, n) in enumerate(zip(start, stop, arr.shape, strict=True)):
        lead = (slice(None),) * axis
        if a < 0:
            out[(*lead, slice(0, min(-a, b - a)))] = pad
        if b > n:
            out[(*lead, slice(max(0, n - a), b - a))] = pad
    return out, False


class FetchedRegions:
    """The stored bytes of a batch of regions, fetched but not yet decoded (see :func:`fetch_regions`).

    Fetching is I/O only and may run in a background thread; :meth:`assemble` verifies, decodes
    and places the chunks (CPU) in the calling thread.
    """

    def __init__(
        self,
        requests: Sequence[RegionRequest],
        reads: list[ChunkRead | tuple[int, tuple[slice, ...]]],
        ranged: list[ChunkRead],
        blobs: list[memoryview | None],
        whole: list[ChunkRead],
        whole_blobs: list[bytes | None],
    ) -> None:
        self.requests = list(requests)
        self._reads = reads
        self._ranged = ranged
        self._blobs = blobs
        self._whole = whole
        self._whole_blobs = whole_blobs

    def assemble(self) -> list[np.ndarray]:
        """The regions as numpy arrays; raises CorruptChunkError naming the case for a bad chunk."""
        requests = self.requests
        absent = [rd for rd in self._reads if not isinstance(rd, ChunkRead)]
        counts = collections.Counter(rd[0] for rd in self._reads)
        gaps = collections.Counter(rd[0] for rd in absent)
        # Start as fill where at least a quarter of the chunks are unstored (labels, mostly).
        allocated = [_allocate(req, has_fill=4 * gaps[r] >= counts[r] > 0) for r, req in enumerate(requests)]
        outs = [out for out, _ in allocated]
        for r, dst in absent:
            if not allocated[r][1]:
                outs[r][dst] = requests[r].array.meta.fill_value
        decoders = [_fast_decoder(req.array.meta) for req in requests]
        for rd, blob in zip(self._ranged, self._blobs, strict=True):
            r = rd.request
            try:
                if blob is None or len(blob) != rd.end - rd.start:  # type: ignore[operator]
                    got = "missing object" if blob is None else f"{len(blob)} bytes"
                    raise CorruptChunkError(f"the shard index points past the object ({got})")
                chunk = decoders[r](blob)
            except CorruptChunkError as exc:
                chunk = _reread(requests[r].array, rd, exc)
            outs[r][rd.dst] = chunk[rd.src]
        store = requests[0].array.store if requests else None
        for rd, blob in zip(self._whole, self._whole_blobs, strict=True):
            arr = requests[rd.request].array
            if blob is None:
                outs[rd.request][rd.dst] = arr.meta.fill_value
                continue
            what = f"{arr.name}: chunk {rd.chunk} ({store.url(rd.rel)})"  # type: ignore[union-attr]
            chunk = decode_chunk(arr.meta, blob, what=what, reuse=True)
            outs[rd.request][rd.dst] = chunk[rd.src]
        return outs


def fetch_regions(requests: Sequence[RegionRequest]) -> FetchedRegions:
    """Steps 1-3 of :func:`read_regions`: plan, load shard indexes, fetch every chunk's bytes (I/O only)."""
    if not requests:
        return FetchedRegions([], [], [], [], [], [])
    reads = plan_reads(requests)
    store = requests[0].array.store
    ranged: list[ChunkRead] = []
    whole: list[ChunkRead] = []
    for rd in reads:
        if isinstance(rd, ChunkRead):
            (whole if rd.start is None else ranged).append(rd)
    blobs = store.read_ranges([(rd.rel, rd.start, rd.end) for rd in ranged])  # type: ignore[misc]
    whole_blobs = store.read_many([rd.rel for rd in whole]) if whole else []
    return FetchedRegions(requests, reads, ranged, blobs, whole, whole_blobs)


def read_regions(requests: Sequence[RegionRequest]) -> list[np.ndarray]:
    """Read several regions (of arrays in one store) with one batch of storage requests.

    Order of operations: 1. find the chunks each region touches, 2. fetch the shard indexes not yet
    cached, 3. fetch the bytes of every stored chunk at once, 4. verify and decode each chunk and
    copy its overlap into the output; unstored chunks become the fill value, voxels outside the
    array the pad value.
    """
    if not requests:
        return []
    return fetch_regions(requests).assemble()


def _fast_decoder(meta: ArrayMeta) -> Any:
    """``blob -> chunk`` for the per-chunk loop: crc32c-checked, decoded into this thread's scratch
    buffer (valid until the next chunk of the same size). CorruptChunkError on any failure."""
    if meta.compressor != "blosc" or not meta.chunk_crc:
        return lambda blob: decode_chunk(meta, blob, reuse=True)
    buf = scratch(meta.chunk_nbytes)
    view = buf.view(meta.dtype).reshape(meta.chunk_shape)
    decompress = blosc_module().decompress
    crc = _crc32c.crc32c

    def decode(blob: memoryview) -> np.ndarray:
        n = len(blob) - 4
        if n < 0 or crc(blob[:n]) != int.from_bytes(blob[n:], "little"):
            # The slow path words the error (checksum or length).
            return decode_chunk(meta, blob, reuse=True)
        try:
            decompress(blob[:n], buf)
        except Exception as exc:  # numcodecs raises RuntimeError / ValueError for malformed frames
            raise CorruptChunkError(f"cannot decompress ({type(exc).__name__}: {exc})") from exc
        return view

    return decode


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
) -> dict[tuple[str, tuple[int, ...]], ShardIndex | None]:
    """The indexes of every shard the regions touch (None: no such object), fetching the missing ones together."""
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
        index = None
        if blob is not None:
            what = f"{arr.name}: {arr.store.url(obj)} bytes {s}-{e}"
            if len(blob) != e - s:
                raise CorruptChunkError(f"{what}: shard is {len(blob)} bytes, shorter than its index")
            index = parse_shard_index(arr.meta, blob, what=what)
        arr._index_cache.put(key, index)
        found[key] = index
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

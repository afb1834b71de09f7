"""CT pixel decode: stored values -> Hounsfield units as int16.

``HU = stored * RescaleSlope + RescaleIntercept`` (the frame's PixelValueTransformationSequence
for enhanced multi-frame CT), rounded to the nearest integer and clipped into
``BuildConfig.hu_clip`` (default -1024..3071, the 12-bit CT range) before the int16 cast, so
padding values such as -2000 or -3024 outside the field of view become -1024 and nothing wraps
around. Every transfer syntax with a pydicom decoder installed here is read: implicit and
explicit VR little endian, deflated, RLE, JPEG baseline/extended/lossless (pylibjpeg-libjpeg),
JPEG-LS (pyjpegls) and JPEG 2000 (pylibjpeg-openjpeg); any other is
``unsupported_transfer_syntax``.

The common case, a single-frame monochrome 8- or 16-bit image in implicit or explicit VR little
endian whose PixelData offset the index recorded (``InstanceHeader.pixel_data_offset``), is not
parsed again: only its pixel bytes are fetched, with one ranged read per file (``cat_ranges``, a
batch of files per call), and turned into the same stored values as pydicom's ``pixel_array``
(values masked to BitsStored, sign-extended when signed). Every other file is read in full and
decoded by pydicom.
"""

from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import RAW_PIXEL_SYNTAXES
from hcc_shards.dicom.limits import MAX_READ_BYTES, check_file_bytes, header_read_limit
from hcc_shards.dicom.stack import SliceRef
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import Reason
from hcc_shards.retry import is_storage_error
from hcc_shards.storage import filesystem

MAX_ABS_RESCALE_SLOPE = 1000.0
"""A RescaleSlope beyond this (or <= 0, or not finite) is ``invalid_rescale``."""


READ_AHEAD = 8
"""CT files fetched ahead, in threads, while earlier ones are parsed (overlaps I/O with decoding)."""

RAW_BATCH = 8
"""Files whose pixel bytes are fetched by one ``cat_ranges`` call on the raw path; the next batch is
fetched in a thread while this one is converted. Small, because two batches of bytes wait in
memory beside the volume (32 files put the 90-slice case's added memory over 3x the raw CT)."""

_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})


def read_dataset(
    url: str, storage_options: dict[str, Any] | None = None, limit: int | None = None
) -> Dataset:
    """The whole file as a pydicom Dataset (pixel data included); raises QuarantineError.

    At most ``limit`` bytes are read, and a deflated dataset is inflated only when it stays within
    them (``too_large`` otherwise, :mod:`hcc_shards.dicom.limits`). Pass ``header_read_limit`` of
    the file's indexed header; None takes the limit from the file's own header (and reads at most
    :data:`~hcc_shards.dicom.limits.MAX_READ_BYTES`).
    """
    return _parse(url, _fetch(url, storage_options, limit), limit)


def _fetch(url: str, storage_options: dict[str, Any] | None, limit: int | None) -> bytes:
    fs, path = filesystem(url, storage_options)
    try:
        # One byte past the limit tells a file over it from one exactly at it.
        return fs.cat_file(path, start=0, end=(MAX_READ_BYTES if limit is None else limit) + 1)
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        raise QuarantineError(Reason.STORAGE_ERROR, f"{url}: {type(exc).__name__}: {exc}") from exc


def _parse(url: str, data: bytes, limit: int | None) -> Dataset:
    check_file_bytes(data, url, limit)
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise QuarantineError(Reason.UNREADABLE, f"{url}: {type(exc).__name__}: {exc}") from exc


def read_datasets(
    urls: Sequence[str],
    storage_options: dict[str, Any] | None = None,
    window: int | None = None,
    limits: Mapping[str, int] | None = None,
) -> Iterator[tuple[str, Dataset]]:
    """(url, Dataset) in the order of ``urls``; up to ``window`` files are fetched ahead in threads.

    ``window`` defaults to :data:`READ_AHEAD`. At most ``window`` files' bytes wait in memory;
    errors are raised for the file they concern, in order, as :func:`read_dataset` raises them.
    ``limits`` gives a file's read limit by URL (default: from the file's own header).
    """
    window = READ_AHEAD if window is None else window
    limits = limits or {}
    if window <= 1 or len(urls) <= 1:
        for url in urls:
            yield url, read_dataset(url, storage_options, limits.get(url))
        return
    with ThreadPoolExecutor(max_workers=window) as pool:
        ahead = iter(urls)

        def submit(u: str) -> tuple[str, int | None, Future[bytes]]:
            limit = limits.get(u)
            return u, limit, pool.submit(_fetch, u, storage_options, limit)

        pending: deque[tuple[str, int | None, Future[bytes]]] = deque(
            submit(u) for u in islice(ahead, window)
        )
        while pending:
            url, limit, future = pending.popleft()
            nxt = next(ahead, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield url, _parse(url, future.result(), limit)


def transfer_syntax_supported(uid: str) -> bool:
    """Whether an installed pydicom pixel decoder handles transfer syntax ``uid``."""
    try:
        return bool(get_decoder(UID(uid)).is_available)
    except (NotImplementedError, ValueError, KeyError):
        return False


def check_transfer_syntax(uid: str, url: str) -> None:
    """Raise ``unsupported_transfer_syntax`` unless ``uid`` can be decoded here."""
    if not transfer_syntax_supported(uid):
        name = UID(uid).name if uid else "none"
        raise QuarantineError(
            Reason.UNSUPPORTED_TRANSFER_SYNTAX,
            f"{url}: transfer syntax {uid or 'missing'} ({name}) has no installed decoder; expected one of "
            "the little endian, deflate, RLE, JPEG, JPEG-LS or JPEG 2000 syntaxes",
        )


def check_decodable(ds: Dataset, url: str) -> None:
    """Raise ``no_pixel_data`` or ``unsupported_transfer_syntax`` before trying to decode."""
    if "PixelData" not in ds:
        raise QuarantineError(Reason.NO_PIXEL_DATA, f"{url}: no PixelData element")
    check_transfer_syntax(str(ds.file_meta.get("TransferSyntaxUID", "")), url)


def frames_of(ds: Dataset, url: str) -> np.ndarray:
    """Stored pixel values as (frames, rows, columns); raises QuarantineError."""
    check_decodable(ds, url)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise QuarantineError(Reason.UNREADABLE, f"{url}: pixel data cannot be decoded: {exc}") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1 and arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise QuarantineError(
            Reason.UNREADABLE, f"{url}: expected (frames, rows, columns) pixels, got shape {arr.shape}"
        )
    return arr


def rescale_of(ds: Dataset, frame: int) -> tuple[float | None, float | None]:
    """(slope, intercept) of a frame (1-based; 0 for single-frame)."""
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is None:
        groups = []
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame and frame >= 1:
            groups.append(per_frame[frame - 1])
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            groups.append(shared[0])
        for g in groups:
            seq = g.get("PixelValueTransformationSequence")
            if seq:
                slope, intercept = seq[0].get("RescaleSlope"), seq[0].get("RescaleIntercept")
                break
    return (
        float(slope) if slope not in (None, "") else None,
        float(intercept) if intercept not in (None, "") else None,
    )


def to_hu(stored: np.ndarray, slope: float, intercept: float, clip: tuple[int, int]) -> np.ndarray:
    """Stored values -> int16 HU, rounded and clipped into ``clip``."""
    lo, hi = int(clip[0]), int(clip[1])
    if slope == 1.0 and float(intercept).is_integer():
        hu = stored.astype(np.int32) + int(intercept)
    else:
        hu = np.rint(stored.astype(np.float64) * slope + intercept)
    return np.clip(hu, lo, hi).astype(np.int16)


def _check_rescale(slope: float | None, intercept: float | None, url: str) -> tuple[float, float]:
    if slope is None or intercept is None:
        raise QuarantineError(
            Reason.INVALID_RESCALE,
            f"{url}: RescaleSlope/RescaleIntercept absent; expected both on a CT image",
        )
    if not (math.isfinite(slope) and math.isfinite(intercept)) or not 0 < slope <= MAX_ABS_RESCALE_SLOPE:
        raise QuarantineError(
            Reason.INVALID_RESCALE,
            f"{url}: RescaleSlope {slope}, RescaleIntercept {intercept}; expected 0 < slope <= "
            f"{MAX_ABS_RESCALE_SLOPE} and finite values",
        )
    return slope, intercept


def raw_pixel_length(header: InstanceHeader) -> int | None:
    """Bytes of stored pixels to read for ``header`` on the raw path, or None if it must take pydicom's.

    The raw path needs: implicit or explicit VR little endian, a recorded native PixelData value
    whose length is exactly the declared frame (plus the pad byte of an odd length), one frame, one
    sample, MONOCHROME1/2, 8 or 16 bits allocated, 1 <= BitsStored <= BitsAllocated, and
    RescaleSlope/Intercept in the header.
    """
    h = header
    if (
        h.pixel_data_offset is None
        or h.pixel_data_length is None
        or h.transfer_syntax_uid not in RAW_PIXEL_SYNTAXES
        or h.number_of_frames != 1
        or len(h.frame_positions) > 1
        or h.samples_per_pixel != 1
        or h.photometric_interpretation not in _MONOCHROME
        or h.bits_allocated not in (8, 16)
        or not 1 <= h.bits_stored <= h.bits_allocated
        or h.pixel_representation not in (0, 1)
        or h.rows <= 0
        or h.columns <= 0
        or h.rescale_slope is None
        or h.rescale_intercept is None
    ):
        return None
    expected = h.rows * h.columns * (h.bits_allocated // 8)
    if h.pixel_data_length == expected or (expected % 2 and h.pixel_data_length == expected + 1):
        return expected
    return None


def stored_values(data: bytes, header: InstanceHeader) -> np.ndarray:
    """The (rows, columns) stored values of raw little-endian pixel bytes, as pydicom's ``pixel_array``.

    Bits above BitsStored are cleared (unsigned) or replaced by the sign bit (signed).
    """
    bits, stored = header.bits_allocated, header.bits_stored
    signed = header.pixel_representation == 1
    unsigned_dtype = np.dtype("<u2") if bits == 16 else np.dtype("u1")
    signed_dtype = np.dtype("<i2") if bits == 16 else np.dtype("i1")
    count = header.rows * header.columns
    arr = np.frombuffer(data, dtype=unsigned_dtype, count=count)
    if stored < bits:
        shift = unsigned_dtype.type(bits - stored)
        if signed:
            arr = (arr << shift).view(signed_dtype) >> signed_dtype.type(bits - stored)
        else:
            arr = arr & unsigned_dtype.type((1 << stored) - 1)
    elif signed:
        arr = arr.view(signed_dtype)
    return arr.reshape(header.rows, header.columns)


def _fetch_raw(
    batch: Sequence[tuple[str, InstanceHeader, int]], storage_options: dict[str, Any] | None
) -> list[bytes | BaseException]:
    """The pixel bytes of each (url, header, length) of ``batch``, or the exception reading it raised.

    One ``cat_ranges`` call when every file is on the same store; if it fails, or the files are on
    different stores, one ranged ``cat_file`` per file, so that each error is the file's own.
    """
    located = [filesystem(url, storage_options) for url, _, _ in batch]
    starts = [int(h.pixel_data_offset or 0) for _, h, _ in batch]
    ends = [start + n for start, (_, _, n) in zip(starts, batch, strict=True)]
    first = getattr(located[0][0], "fs", located[0][0])  # the store under a retrying wrapper
    if all(getattr(f, "fs", f) is first for f, _ in located):
        try:
            data = located[0][0].cat_ranges([p for _, p in located], starts, ends, on_error="raise")
            if len(data) == len(batch):
                return list(data)
        except Exception:
            pass
    out: list[bytes | BaseException] = []
    for (f, p), start, end in zip(located, starts, ends, strict=True):
        try:
            out.append(f.cat_file(p, start=start, end=end))
        except Exception as exc:
            out.append(exc)
    return out


def _raw_frame(url: str, header: InstanceHeader, length: int, data: bytes | BaseException) -> np.ndarray:
    if isinstance(data, BaseException) and is_storage_error(data):
        raise QuarantineError(Reason.STORAGE_ERROR, f"{url}: {type(data).__name__}: {data}") from data
    if isinstance(data, BaseException):
        raise QuarantineError(
            Reason.UNREADABLE, f"{url}: pixel data cannot be read: {type(data).__name__}: {data}"
        ) from data
    if len(data) != length:
        raise QuarantineError(
            Reason.UNREADABLE,
            f"{url}: pixel data cannot be decoded: expected {length} bytes of PixelData at offset "
            f"{header.pixel_data_offset}, the read returned {len(data)} (truncated file?)",
        )
    return stored_values(data, header)


def _raw_frames(
    todo: Sequence[tuple[str, InstanceHeader, int]], storage_options: dict[str, Any] | None
) -> Iterator[tuple[str, InstanceHeader, np.ndarray]]:
    """(url, header, stored frame) of each item of ``todo``, in order; batch n+1 is fetched meanwhile."""
    batches = [todo[i : i + RAW_BATCH] for i in range(0, len(todo), RAW_BATCH)]
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_fetch_raw, batches[0], storage_options)
        for i, batch in enumerate(batches):
            data = future.result()
            if i + 1 < len(batches):
                future = pool.submit(_fetch_raw, batches[i + 1], storage_options)
            for (url, header, length), item in zip(batch, data, strict=True):
                yield url, header, _raw_frame(url, header, length, item)


def decode_ct(
    headers: Sequence[InstanceHeader],
    slices: Sequence[SliceRef],
    config: BuildConfig,
    storage_options: dict[str, Any] | None = None,
    *,
    raw: bool = True,
) -> np.ndarray:
    """The (z, y, x) int16 HU volume of ``slices``, reading each instance of ``headers`` once.

    Files that :func:`raw_pixel_length` allows are read as raw pixel bytes (``raw=False``: none);
    the others are parsed by pydicom.
    """
    if not slices:
        raise ValueError("decode_ct needs at least one slice")
    rows, cols = headers[0].rows, headers[0].columns
    out = np.empty((len(slices), rows, cols), dtype=np.int16)
    wanted: dict[str, list[tuple[int, SliceRef]]] = {}
    for z, s in enumerate(slices):
        wanted.setdefault(s.url, []).append((z, s))
    by_url = {h.url: h for h in headers}
    fast: list[tuple[str, InstanceHeader, int]] = []
    slow: list[str] = []
    for url, items in wanted.items():
        header = by_url.get(url)
        length = raw_pixel_length(header) if raw and header is not None else None
        if length is None or any(s.frame > 1 for _, s in items):
            slow.append(url)
        else:
            fast.append((url, header, length))  # type: ignore[arg-type]
    for url, header, frame in _raw_frames(fast, storage_options):
        if frame.shape != (rows, cols):
            raise QuarantineError(
                Reason.INCONSISTENT_GEOMETRY,
                f"{url}: pixel data is {frame.shape[0]}x{frame.shape[1]}, header says {rows}x{cols}",
            )
        slope, intercept = _check_rescale(header.rescale_slope, header.rescale_intercept, url)
        hu = to_hu(frame, slope, intercept, config.hu_clip)
        for z, _ in wanted[url]:
            out[z] = hu
    limits = {url: header_read_limit(by_url[url]) for url in slow if url in by_url}
    for url, ds in read_datasets(slow, storage_options, limits=limits) if slow else ():
        items = wanted[url]
        frames = frames_of(ds, url)
        if frames.shape[1:] != (rows, cols):
            raise QuarantineError(
                Reason.INCONSISTENT_GEOMETRY,
                f"{url}: pixel data is {frames.shape[1]}x{frames.shape[2]}, header says {rows}x{cols}",
            )
        for z, s in items:
            index = s.frame - 1 if s.frame else 0
            if index >= frames.shape[0]:
                raise QuarantineError(
                    Reason.UNREADABLE, f"{url}: frame {s.frame} requested, only {frames.shape[0]} decoded"
                )
            slope, intercept = _check_rescale(*rescale_of(ds, s.frame), url)
            out[z] = to_hu(frames[index], slope, intercept, config.hu_clip)
    return out

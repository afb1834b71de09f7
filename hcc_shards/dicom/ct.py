"""CT pixel decode: stored values -> Hounsfield units as int16.

``HU = stored * RescaleSlope + RescaleIntercept`` (the frame's PixelValueTransformationSequence
for enhanced multi-frame CT), rounded to the nearest integer and clipped into
``BuildConfig.hu_clip`` (default -1024..3071, the 12-bit CT range) before the int16 cast, so
padding values such as -2000 or -3024 outside the field of view become -1024 and nothing wraps
around. Every transfer syntax with a pydicom decoder installed here is read: implicit and
explicit VR little endian, deflated, RLE, JPEG baseline/extended/lossless (pylibjpeg-libjpeg),
JPEG-LS (pyjpegls) and JPEG 2000 (pylibjpeg-openjpeg); any other is
``unsupported_transfer_syntax``.
"""

from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Iterator, Sequence
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
from hcc_shards.dicom.stack import SliceRef
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import Reason
from hcc_shards.storage import filesystem

MAX_ABS_RESCALE_SLOPE = 1000.0
"""A RescaleSlope beyond this (or <= 0, or not finite) is ``invalid_rescale``."""


READ_AHEAD = 8
"""CT files fetched ahead, in threads, while earlier ones are parsed (overlaps I/O with decoding)."""


def read_dataset(url: str, storage_options: dict[str, Any] | None = None) -> Dataset:
    """The whole file as a pydicom Dataset (pixel data included); raises QuarantineError."""
    return _parse(url, _fetch(url, storage_options))


def _fetch(url: str, storage_options: dict[str, Any] | None) -> bytes:
    fs, path = filesystem(url, storage_options)
    try:
        return fs.cat_file(path)
    except (FileNotFoundError, PermissionError, ConnectionError, TimeoutError) as exc:
        raise QuarantineError(Reason.STORAGE_ERROR, f"{url}: {type(exc).__name__}: {exc}") from exc


def _parse(url: str, data: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:
        raise QuarantineError(Reason.UNREADABLE, f"{url}: {type(exc).__name__}: {exc}") from exc


def read_datasets(
    urls: Sequence[str], storage_options: dict[str, Any] | None = None, window: int | None = None
) -> Iterator[tuple[str, Dataset]]:
    """(url, Dataset) in the order of ``urls``; up to ``window`` files are fetched ahead in threads.

    ``window`` defaults to :data:`READ_AHEAD`. At most ``window`` files' bytes wait in memory;
    errors are raised for the file they concern, in order, as :func:`read_dataset` raises them.
    """
    window = READ_AHEAD if window is None else window
    if window <= 1 or len(urls) <= 1:
        for url in urls:
            yield url, read_dataset(url, storage_options)
        return
    with ThreadPoolExecutor(max_workers=window) as pool:
        ahead = iter(urls)
        pending: deque[tuple[str, Future[bytes]]] = deque(
            (u, pool.submit(_fetch, u, storage_options)) for u in islice(ahead, window)
        )
        while pending:
            url, future = pending.popleft()
            nxt = next(ahead, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_fetch, nxt, storage_options)))
            yield url, _parse(url, future.result())


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


def decode_ct(
    headers: Sequence[InstanceHeader],
    slices: Sequence[SliceRef],
    config: BuildConfig,
    storage_options: dict[str, Any] | None = None,
) -> np.ndarray:
    """The (z, y, x) int16 HU volume of ``slices``, reading each instance of ``headers`` once."""
    if not slices:
        raise ValueError("decode_ct needs at least one slice")
    rows, cols = headers[0].rows, headers[0].columns
    out = np.empty((len(slices), rows, cols), dtype=np.int16)
    wanted: dict[str, list[tuple[int, SliceRef]]] = {}
    for z, s in enumerate(slices):
        wanted.setdefault(s.url, []).append((z, s))
    for url, ds in read_datasets(list(wanted), storage_options):
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

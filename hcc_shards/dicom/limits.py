"""Per-file read limits: no file is read past what its own header says it can need.

A legitimate file holds its pixel data (Rows x Columns x frames x samples x BitsAllocated bits),
a quarter more of it for encapsulated encodings that can grow past the native size (item headers,
offset tables, lossless codes of noise), and a header: :data:`HEADER_ALLOWANCE_BYTES` plus
:data:`FRAME_ALLOWANCE_BYTES` per frame (the per-frame functional groups of enhanced images and
SEGs). :func:`read_limit` is that sum, capped at :data:`MAX_READ_BYTES`. A file or an inflated
dataset beyond it is ``too_large`` (docs/RELIABILITY.md, section 6 "Limits").

Deflated Explicit VR Little Endian files (PS3.5 A.5) are the reason: pydicom inflates the whole
dataset in one call, so a 1 MB file whose private element inflates to 1 GiB took gigabytes
before any check could run. :func:`check_inflated` inflates in bounded steps, discarding what it
produced, and stops after ``limit + 1`` bytes; only a stream it passed goes to pydicom.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import pydicom
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import Reason

DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
"""Deflated Explicit VR Little Endian: the dataset after the file meta is one raw deflate stream."""

HEADER_ALLOWANCE_BYTES = 64 * 1024 * 1024
"""Bytes a file may hold besides its pixel data and per-frame groups; also the most inflated bytes
read while the image attributes (group 0028) are not known yet."""
FRAME_ALLOWANCE_BYTES = 16 * 1024
"""Header bytes allowed per frame (a SEG's per-frame item is about 0.5 KiB)."""
PIXEL_SLACK_DIVISOR = 4
"""Encapsulated pixel data may exceed the native size by 1/4 of it."""
MAX_READ_BYTES = 4 * 1024 * 1024 * 1024
"""Absolute cap of :func:`read_limit`, whatever the header declares (2^30 voxels of 32 bits)."""

COMPRESSED_CHUNK_BYTES = 64 * 1024
"""Compressed bytes handed to zlib at a time (its unconsumed input is copied on every step)."""
INFLATE_STEP_BYTES = 1024 * 1024
"""Most inflated bytes one zlib call may produce (what a bomb can allocate at once)."""
FIRST_PARSE_BYTES = 16 * 1024
"""Inflated bytes before the first try to read the image attributes; doubled on every try."""

_DEFER = 1024
"""Values longer than this are skipped, not read, while the image attributes are looked for."""


def read_limit(rows: int, columns: int, frames: int, bits_allocated: int, samples_per_pixel: int = 1) -> int:
    """The most bytes a file (or its inflated dataset) of these image attributes can need."""
    frames = max(1, int(frames))
    samples = max(0, int(rows)) * max(0, int(columns)) * frames * max(1, int(samples_per_pixel))
    pixel = (samples * max(0, int(bits_allocated)) + 7) // 8
    need = pixel + pixel // PIXEL_SLACK_DIVISOR + frames * FRAME_ALLOWANCE_BYTES + HEADER_ALLOWANCE_BYTES
    return min(MAX_READ_BYTES, need)


def describe_limit(
    rows: int, columns: int, frames: int, bits_allocated: int, samples_per_pixel: int = 1
) -> str:
    """How :func:`read_limit` came about, for messages."""
    return (
        f"{rows}x{columns}x{max(1, frames)} pixels of {samples_per_pixel}x{bits_allocated} bits, 1/4 more, "
        f"{FRAME_ALLOWANCE_BYTES} bytes per frame and {HEADER_ALLOWANCE_BYTES} of header, at most "
        f"{MAX_READ_BYTES}"
    )


def header_read_limit(header: InstanceHeader) -> int:
    """:func:`read_limit` of an indexed file."""
    return read_limit(*_attributes(header))


def describe_header_limit(header: InstanceHeader) -> str:
    """:func:`describe_limit` of an indexed file."""
    return describe_limit(*_attributes(header))


def _attributes(header: InstanceHeader) -> tuple[int, int, int, int, int]:
    h = header
    return h.rows, h.columns, h.number_of_frames, h.bits_allocated, h.samples_per_pixel


def deflated_start(fp: BinaryIO) -> int | None:
    """Offset of the deflate stream when ``fp`` is a Deflated Explicit VR Little Endian file, else None.

    Reads the preamble and the file meta with pydicom's own functions (``_read_file_meta_info`` is
    private, but it is the one ``dcmread`` calls: this decides as ``dcmread`` will, for every odd file
    meta it accepts), then puts ``fp`` back where it was. None as well when they cannot be read:
    ``dcmread`` reports that itself.
    """
    where = fp.tell()
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        start = fp.tell()
    except Exception:
        return None
    finally:
        fp.seek(where)
    return start if str(meta.get("TransferSyntaxUID", "")) == DEFLATED_SYNTAX else None


def check_inflated(chunks: Iterable[bytes | memoryview], url: str, limit: int | None = None) -> int:
    """Inflate the raw deflate stream ``chunks``, keeping none of it; return its inflated size.

    ``limit`` is the most inflated bytes allowed; None reads it from the dataset itself: until its
    image attributes have been inflated the limit is :data:`HEADER_ALLOWANCE_BYTES`, then
    :func:`read_limit` of them. Raises ``too_large`` as soon as the limit is passed, ``unreadable``
    for a damaged stream. Memory stays near :data:`INFLATE_STEP_BYTES` (plus the inflated bytes up to
    the image attributes when ``limit`` is None).
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    known = (limit, "the most its header allows") if limit is not None else None
    prefix = bytearray()
    next_parse = FIRST_PARSE_BYTES
    total = compressed = 0
    try:
        for chunk in _pieces(chunks):
            compressed += len(chunk)
            data: bytes | memoryview = chunk
            while True:
                step = min(INFLATE_STEP_BYTES, _cap(known) + 1 - total)  # >= 1: total <= cap here
                out = inflater.decompress(data, step)
                total += len(out)
                if known is None:
                    prefix += out
                    if len(prefix) >= next_parse:
                        known = _limit_of_prefix(bytes(prefix))
                        next_parse *= 2
                        if known is not None:
                            prefix = bytearray()
                if total > _cap(known):
                    raise QuarantineError(
                        Reason.FILE_TOO_LARGE, _message(url, _cap(known), total, compressed, known)
                    )
                data = inflater.unconsumed_tail
                # A byte after the end of the stream (a dataset padded to even length) stays in
                # unconsumed_tail once eof is reached: nothing more will come out of it.
                if inflater.eof or (not data and len(out) < step):
                    break
            if inflater.eof:
                break
    except zlib.error as exc:
        raise QuarantineError(
            Reason.UNREADABLE, f"{url}: the deflated dataset cannot be inflated: {exc}"
        ) from exc
    return total


def checked_deflated_bytes(fp: BinaryIO, start: int, url: str, limit: int | None = None) -> bytes:
    """Every byte of the deflated file ``fp`` (positioned at 0), once :func:`check_inflated` passed.

    The compressed bytes are read once, in chunks, and kept for pydicom; the check stops reading at
    the limit, so what is kept stays below it too.
    """
    head = fp.read(start)
    kept: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        while chunk := fp.read(COMPRESSED_CHUNK_BYTES):
            kept.append(chunk)
            yield chunk

    check_inflated(chunks(), url, limit)
    return head + b"".join(kept)


def check_file_bytes(data: bytes, url: str, limit: int | None = None) -> None:
    """Raise ``too_large`` when a whole file's bytes ``data`` pass ``limit``, or when the file is
    deflated and its dataset inflates past it. None: :data:`MAX_READ_BYTES` for the file, and the
    limit the deflated dataset's own header gives (:func:`check_inflated`)."""
    if len(data) > (MAX_READ_BYTES if limit is None else limit):
        raise QuarantineError(
            Reason.FILE_TOO_LARGE,
            f"{url}: the file holds more than {MAX_READ_BYTES if limit is None else limit} bytes, the most "
            f"its header allows; read stopped at {len(data)}",
        )
    start = deflated_start(io.BytesIO(data))
    if start is not None:
        check_inflated([memoryview(data)[start:]], url, limit)


# -- helpers -------------------------------------------------------------------------------


class _NeedMore(Exception):
    """The inflated prefix ends before the image attributes do."""


class _Prefix(io.BytesIO):
    """The inflated start of a dataset: a read it cannot satisfy in full asks for more."""

    def read(self, size: int | None = -1, /) -> bytes:
        want = None if size is None or size < 0 else size
        data = super().read(size)
        if want is None or len(data) < want:
            raise _NeedMore
        return data


def _past_image_group(tag: Any, vr: str | None, length: int) -> bool:
    return int(tag) > 0x0028FFFF


def _limit_of_prefix(prefix: bytes) -> tuple[int, str] | None:
    """(:func:`read_limit`, how it came about) of the dataset starting with ``prefix``; None while
    group 0028 may go on."""
    try:
        ds = read_dataset(_Prefix(prefix), False, True, stop_when=_past_image_group, defer_size=_DEFER)
    except _NeedMore:
        return None
    except Exception:
        return None  # not readable as a dataset (yet): the header allowance holds
    attributes = (
        _int(ds, "Rows"),
        _int(ds, "Columns"),
        _int(ds, "NumberOfFrames") or 1,
        _int(ds, "BitsAllocated"),
        _int(ds, "SamplesPerPixel") or 1,
    )
    return read_limit(*attributes), f"the most its header allows: {describe_limit(*attributes)}"


def _int(ds: pydicom.Dataset, keyword: str) -> int:
    try:
        return int(float(ds.get(keyword) or 0))
    except (TypeError, ValueError):
        return 0


def _cap(known: tuple[int, str] | None) -> int:
    return HEADER_ALLOWANCE_BYTES if known is None else known[0]


def _pieces(chunks: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    for chunk in chunks:
        view = memoryview(chunk)
        for i in range(0, len(view), COMPRESSED_CHUNK_BYTES):
            yield view[i : i + COMPRESSED_CHUNK_BYTES]


def _message(url: str, cap: int, total: int, compressed: int, known: tuple[int, str] | None) -> str:
    why = known[1] if known is not None else "allowed before its image attributes (group 0028)"
    return (
        f"{url}: the deflated dataset inflates to more than {cap} bytes ({why}); refused after "
        f"inflating {total} bytes from {compressed} compressed (a decompression bomb?)"
    )

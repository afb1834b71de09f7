"""Read DICOM headers through fsspec, fetching only the bytes the header needs.

On an object store a naive ``fs.open`` fetches a large block (5 MiB for s3fs) per read, so a
header read would download whole CT slices. :class:`RangeReader` instead asks the filesystem
for byte ranges that start small (16 KiB) and double while pydicom keeps reading, and counts
every byte it fetched: the count is kept in ``InstanceHeader.bytes_read``.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import fsspec
import pydicom
from pydicom.errors import InvalidDicomError

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.frames import UNDEFINED_LENGTH
from hcc_shards.dicom.header import MEDIA_STORAGE_DIRECTORY_UID, InstanceHeader, header_from_dataset
from hcc_shards.dicom.limits import (
    checked_deflated_bytes,
    deflated_start,
    describe_header_limit,
    header_read_limit,
)
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import QuarantineRecord, Reason
from hcc_shards.retry import is_storage_error
from hcc_shards.storage import filesystem

_DEFAULT_CONFIG = BuildConfig()

FIRST_RANGE_BYTES = 16 * 1024
"""Size of the first range request of a header read."""
MAX_RANGE_BYTES = 1024 * 1024
"""Range requests double up to this size (a SEG's per-frame header can be hundreds of KiB)."""
DEFER_SIZE = "64 KB"
"""Values larger than this (private blobs, icons) are skipped by seeking, not read."""


RAW_PIXEL_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
"""Implicit and explicit VR little endian: PixelData is stored as plain bytes in the file."""
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


class _EmptyFileError(Exception):
    pass


READ_BUFFER_BYTES = 4096
"""Buffer between pydicom and the range reader; small, so that little is read past the header."""


class RangeReader(io.RawIOBase):
    """A seekable, read-only file over ``fs.cat_file`` byte ranges that counts fetched bytes."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, size: int) -> None:
        super().__init__()
        self._fs = fs
        self._path = path
        self._size = int(size)
        self._pos = 0
        self._buf = b""
        self._buf_start = 0
        self._next_request = FIRST_RANGE_BYTES
        self.bytes_fetched = 0
        """Total bytes received from storage."""
        self.requests = 0
        """Number of range requests made."""

    @property
    def name(self) -> str:
        # io.BufferedReader forwards ``name`` to its raw stream, and pydicom asks for it.
        return self._path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"whence must be 0, 1 or 2, got {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = min(len(view), max(0, self._size - self._pos))
        if want == 0:
            return 0
        buf_end = self._buf_start + len(self._buf)
        if not (self._buf_start <= self._pos and self._pos + want <= buf_end):
            self._fetch(self._pos, want)
        off = self._pos - self._buf_start
        chunk = self._buf[off : off + want]
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def _fetch(self, start: int, want: int) -> None:
        length = max(want, self._next_request)
        end = min(self._size, start + length)
        data = self._fs.cat_file(self._path, start=start, end=end)
        self.requests += 1
        self.bytes_fetched += len(data)
        self._buf, self._buf_start = bytes(data), start
        self._next_request = min(MAX_RANGE_BYTES, self._next_request * 2)


def read_header_dataset(
    url: str, storage_options: dict[str, Any] | None = None, size: int | None = None
) -> tuple[pydicom.Dataset, int, int]:
    """(dataset without pixel data, file size, bytes fetched). Raises what pydicom raises.

    ``size`` (from a listing) saves one metadata request per file on object stores.
    """
    ds, size, fetched, _ = _read_header(url, storage_options, size)
    return ds, size, fetched


def _read_header(
    url: str, storage_options: dict[str, Any] | None, size: int | None
) -> tuple[pydicom.Dataset, int, int, tuple[int, int] | None]:
    fs, path = filesystem(url, storage_options)
    size = int(fs.size(path)) if size is None else int(size)
    if size == 0:
        raise _EmptyFileError(url)
    raw = RangeReader(fs, path, size)
    # pydicom reads a header in many reads of a few bytes; a C-level buffer in front of the range
    # reader serves them without a Python call each (a third of the index time otherwise).
    buffered = io.BufferedReader(raw, buffer_size=READ_BUFFER_BYTES)
    start = deflated_start(buffered)
    if start is not None:
        # pydicom inflates a deflated dataset whole before reading a byte of it: it gets the file
        # only once the bounded inflate has passed (raises too_large otherwise).
        data = checked_deflated_bytes(buffered, start, url)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, defer_size=DEFER_SIZE)
        return ds, size, raw.bytes_fetched, None
    ds = pydicom.dcmread(buffered, stop_before_pixels=True, defer_size=DEFER_SIZE)
    # pydicom takes an io.BufferedReader for a local file and would reopen its ``name`` to read a
    # deferred value (a SEG's large per-frame sequence): a path that exists nowhere for gs:// and
    # s3:// objects. Deferred values are read from this stream instead.
    ds.filename, ds.buffer, ds.fileobj_type = None, buffered, type(buffered)
    location = pixel_data_location(ds, buffered, size)
    return ds, size, raw.bytes_fetched, location


def pixel_data_location(ds: pydicom.Dataset, fp: Any, size: int) -> tuple[int, int] | None:
    """(offset, length) of the PixelData value of ``ds``, read with ``stop_before_pixels`` from ``fp``.

    ``fp`` must stand where pydicom stopped: at the start of the (7FE0,0010) element. None unless
    the file is implicit or explicit VR little endian, the element is native (OB/OW, defined
    length) and lies inside the file, and the dataset has no functional groups (whose per-frame
    rescale the raw read would not see).
    """
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts not in RAW_PIXEL_SYNTAXES:
        return None
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return None
    implicit = ts == "1.2.840.10008.1.2"
    if tuple(getattr(ds, "original_encoding", (implicit, True))) != (implicit, True):
        return None  # the dataset is not encoded as its transfer syntax says
    try:
        start = fp.tell()
        head = fp.read(8 if implicit else 12)
    except Exception:
        return None
    if head is None or len(head) < (8 if implicit else 12) or head[:4] != _PIXEL_DATA_TAG:
        return None
    if implicit:
        (length,) = struct.unpack("<I", head[4:8])
        offset = start + 8
    else:
        if head[4:6] not in (b"OB", b"OW") or head[6:8] != b"\x00\x00":
            return None
        (length,) = struct.unpack("<I", head[8:12])
        offset = start + 12
    if length == UNDEFINED_LENGTH or offset + length > size:
        return None
    return offset, length


def index_file(
    url: str,
    storage_options: dict[str, Any] | None = None,
    config: BuildConfig = _DEFAULT_CONFIG,
    *,
    size: int | None = None,
) -> InstanceHeader | QuarantineRecord:
    """Header of one file, or a record saying why it is not an image or SEG we can use.

    Never raises for bad input: non-DICOM files, DICOMDIRs, empty and truncated files become
    records. Storage failures (permission, vanished object) become ``storage_error`` records.
    A file larger than its header allows, or whose deflated dataset inflates past that
    (:mod:`hcc_shards.dicom.limits`), is ``too_large``. Pass ``size`` when a listing already gave it.
    """
    try:
        ds, size, fetched, location = _read_header(url, storage_options, size)
    except QuarantineError as exc:
        return _record(Reason(exc.code), url, exc.message)
    except _EmptyFileError:
        return _record(Reason.UNREADABLE, url, "expected a DICOM file, got an empty (0 byte) object")
    except (InvalidDicomError, EOFError) as exc:
        detail = str(exc).replace(" Use force=True to force reading.", "")
        return _record(Reason.NOT_DICOM, url, f"expected a DICOM Part 10 file, could not parse one: {detail}")
    except Exception as exc:  # pydicom raises many types on damaged files
        if is_storage_error(exc):
            # Not every OSError: pydicom raises OSError for truncated files, which are unreadable.
            return _record(Reason.STORAGE_ERROR, url, f"cannot read the object: {type(exc).__name__}: {exc}")
        return _record(Reason.UNREADABLE, url, f"DICOM header cannot be parsed: {type(exc).__name__}: {exc}")
    sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.file_meta, "MediaStorageSOPClassUID", ""))
    if sop_class == MEDIA_STORAGE_DIRECTORY_UID or "DirectoryRecordSequence" in ds:
        return _record(Reason.NOT_DICOM, url, "a DICOMDIR (media directory), not an image or SEG")
    try:
        header = header_from_dataset(ds, url=url, file_size=size, bytes_read=fetched, pixel_data=location)
    except Exception as exc:
        return _record(
            Reason.UNREADABLE, url, f"DICOM header values cannot be read: {type(exc).__name__}: {exc}"
        )
    if not header.sop_instance_uid:
        return _record(Reason.UNREADABLE, url, "header has no SOPInstanceUID", header)
    if header.modality not in ("CT", "SEG") and not header.is_seg:
        return _record(
            Reason.UNSUPPORTED_MODALITY,
            url,
            f"expected Modality CT or SEG, got {header.modality or 'none'!r}",
            header,
        )
    declared = header.rows * header.columns * header.number_of_frames
    if declared > config.max_voxels:
        return _record(
            Reason.IMAGE_TOO_LARGE,
            url,
            f"declares {header.rows}x{header.columns}x{header.number_of_frames} = {declared} voxels, "
            f"more than max_voxels={config.max_voxels}",
            header,
        )
    limit = header_read_limit(header)
    if size > limit:
        return _record(
            Reason.FILE_TOO_LARGE,
            url,
            f"the file holds {size} bytes, more than the {limit} its header allows "
            f"({describe_header_limit(header)})",
            header,
        )
    return header


def _record(reason: Reason, url: str, message: str, header: InstanceHeader | None = None) -> QuarantineRecord:
    return QuarantineRecord(
        code=reason.value,
        message=message,
        stage="index",
        url=url,
        patient_id=header.patient_id if header else "",
        study_instance_uid=header.study_instance_uid if header else "",
        series_instance_uid=header.series_instance_uid if header else "",
        sop_instance_uid=header.sop_instance_uid if header else "",
    )

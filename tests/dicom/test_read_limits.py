"""Per-file read limits: deflate bombs and files larger than their header allows are ``too_large``,
read with a bounded stream; legitimate deflated files still read the same."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from builders import ct_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from hcc_shards.dicom.ct import read_dataset, read_datasets
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.limits import (
    FRAME_ALLOWANCE_BYTES,
    HEADER_ALLOWANCE_BYTES,
    INFLATE_STEP_BYTES,
    MAX_READ_BYTES,
    check_inflated,
    deflated_start,
    header_read_limit,
    read_limit,
)
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import QuarantineRecord, Reason
from hcc_shards.synth.bomb import deflate_bomb_bytes
from hcc_shards.synth.cohort import encode_dataset

MIB = 1024 * 1024


def _slice(rows: int = 16, columns: int = 16) -> pydicom.Dataset:
    pixels = (np.arange(rows * columns, dtype=np.int16) % 997).reshape(rows, columns)
    return ct_dataset(pixels, (0.0, 0.0, 0.0), series_uid=generate_uid(), study_uid="1.2", for_uid="1.3")


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_read_limit_is_pixels_plus_slack_plus_header_with_a_cap() -> None:
    ct = 512 * 512 * 2
    assert read_limit(512, 512, 1, 16) == ct + ct // 4 + FRAME_ALLOWANCE_BYTES + HEADER_ALLOWANCE_BYTES
    binary_seg = (512 * 512 * 300 + 7) // 8  # BitsAllocated 1: frames packed bit by bit
    assert read_limit(512, 512, 300, 1) == (
        binary_seg + binary_seg // 4 + 300 * FRAME_ALLOWANCE_BYTES + HEADER_ALLOWANCE_BYTES
    )
    rgb = 512 * 512 * 3
    assert read_limit(512, 512, 1, 8, 3) == rgb + rgb // 4 + FRAME_ALLOWANCE_BYTES + HEADER_ALLOWANCE_BYTES
    assert read_limit(0, 0, 0, 0) == FRAME_ALLOWANCE_BYTES + HEADER_ALLOWANCE_BYTES  # no image (an SR)
    assert read_limit(65535, 65535, 65535, 64) == MAX_READ_BYTES


def test_a_deflate_bomb_after_the_image_attributes_is_refused_at_its_header_limit(tmp_path: Path) -> None:
    ds = _slice()
    data = deflate_bomb_bytes(ds, 256 * MIB)
    assert len(data) < 400_000  # 256 MiB inflated from a file of a few hundred KB
    url = _write(tmp_path, "bomb.dcm", data)
    limit = read_limit(16, 16, 1, 16)

    rec = index_file(url)
    assert isinstance(rec, QuarantineRecord)
    assert (rec.code, rec.stage, rec.url) == (Reason.FILE_TOO_LARGE.value, "index", url)
    assert f"inflates to more than {limit} bytes" in rec.message
    assert "16x16x1 pixels of 1x16 bits" in rec.message
    assert f"refused after inflating {limit + 1} bytes" in rec.message  # one byte past the limit, no more

    # The full read stops there too, with the limit of the indexed header or of the file's own.
    for given in (limit, None):
        with pytest.raises(QuarantineError) as err:
            read_dataset(url, limit=given)
        assert err.value.code == Reason.FILE_TOO_LARGE.value
        assert f"inflates to more than {limit} bytes" in err.value.message


def test_a_deflate_bomb_before_the_image_attributes_is_refused_at_the_header_allowance(
    tmp_path: Path,
) -> None:
    url = _write(tmp_path, "early.dcm", deflate_bomb_bytes(_slice(), 128 * MIB, group=0x0009))
    rec = index_file(url)
    assert isinstance(rec, QuarantineRecord) and rec.code == Reason.FILE_TOO_LARGE.value
    assert f"more than {HEADER_ALLOWANCE_BYTES} bytes (allowed before its image attributes" in rec.message


def test_a_deflated_file_within_its_limit_reads_as_before(tmp_path: Path) -> None:
    ds = _slice()
    url = _write(tmp_path, "fine.dcm", deflate_bomb_bytes(ds, 2 * MIB))  # a 2 MiB private blob is fine
    h = index_file(url)
    assert isinstance(h, InstanceHeader)
    assert h.transfer_syntax_uid == DeflatedExplicitVRLittleEndian and h.sop_instance_uid == ds.SOPInstanceUID
    got = read_dataset(url, limit=header_read_limit(h))
    assert len(got[0x00291000].value) == 2 * MIB
    np.testing.assert_array_equal(got.pixel_array, ds.pixel_array)
    (only,) = list(read_datasets([url], limits={url: header_read_limit(h)}))
    np.testing.assert_array_equal(only[1].pixel_array, ds.pixel_array)

    # pydicom's own deflated encoding as well (its stream, its padding)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    plain = tmp_path / "pydicom.dcm"
    ds.save_as(plain, enforce_file_format=True)
    assert isinstance(index_file(str(plain)), InstanceHeader)
    np.testing.assert_array_equal(read_dataset(str(plain)).pixel_array, ds.pixel_array)


def test_a_damaged_deflate_stream_is_unreadable(tmp_path: Path) -> None:
    data = bytearray(deflate_bomb_bytes(_slice(), 1024))
    start = deflated_start(io.BytesIO(bytes(data)))
    assert start is not None
    data[start : start + 64] = b"\xff" * 64
    rec = index_file(_write(tmp_path, "damaged.dcm", bytes(data)))
    assert isinstance(rec, QuarantineRecord) and rec.code == Reason.UNREADABLE.value


def test_check_inflated_never_produces_more_than_a_step_past_the_limit() -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = deflater.compress(bytes(64 * MIB)) + deflater.flush()
    assert check_inflated([stream], "mem", limit=64 * MIB) == 64 * MIB
    # Bytes after the end of the stream (the pad of an odd-length dataset) end the check too.
    assert check_inflated([stream + b"\x00"], "mem", limit=64 * MIB) == 64 * MIB
    assert check_inflated([stream[:1000], stream[1000:] + b"\x00\x00"], "mem") == 64 * MIB
    with pytest.raises(QuarantineError) as err:
        check_inflated([stream], "mem", limit=3 * INFLATE_STEP_BYTES + 5)
    assert err.value.code == Reason.FILE_TOO_LARGE.value
    assert f"refused after inflating {3 * INFLATE_STEP_BYTES + 6} bytes" in err.value.message


def test_a_plain_file_larger_than_its_header_allows_is_too_large(tmp_path: Path) -> None:
    ds = _slice()
    ds.add_new((0x0029, 0x0010), "LO", "VENDOR")
    ds.add_new((0x0029, 0x1000), "OB", bytes(HEADER_ALLOWANCE_BYTES + MIB))
    url = _write(tmp_path, "fat.dcm", encode_dataset(ds))
    rec = index_file(url)
    assert isinstance(rec, QuarantineRecord)
    assert (rec.code, rec.sop_instance_uid) == (Reason.FILE_TOO_LARGE.value, ds.SOPInstanceUID)
    limit = read_limit(16, 16, 1, 16)
    assert f"more than the {limit} its header allows" in rec.message
    # The full read fetches one byte past the limit, never the whole object.
    with pytest.raises(QuarantineError) as err:
        read_dataset(url, limit=limit)
    assert err.value.code == Reason.FILE_TOO_LARGE.value
    assert f"read stopped at {limit + 1}" in err.value.message


def test_a_header_claiming_more_than_the_file_holds_reads_only_the_file(tmp_path: Path) -> None:
    ds = _slice()
    ds.add_new((0x0029, 0x0010), "LO", "VENDOR")
    ds.add_new((0x0029, 0x1000), "OB", bytes(16))
    data = encode_dataset(ds)
    at = data.index(struct.pack("<HH2sH", 0x0029, 0x1000, b"OB", 0)) + 8
    claims = data[:at] + struct.pack("<I", 0x7FFFFFF0) + data[at + 4 :]  # a 2 GiB value in a 1 KB file
    url = _write(tmp_path, "claims.dcm", claims)
    h = index_file(url)
    assert isinstance(h, InstanceHeader) and h.bytes_read == h.file_size == len(claims)
    assert h.pixel_data_offset is None  # the claimed value swallows the pixels: no raw read
    assert "PixelData" not in read_dataset(url, limit=header_read_limit(h))

"""The raw pixel read of decode_ct gives exactly the HU of the pydicom path, and fails the same way."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from builders import ct_dataset
from dicom_corpus import COMPLETE_PAIRS, headers_of
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, generate_uid

from hcc_shards.config import BuildConfig
from hcc_shards.dicom import ct
from hcc_shards.dicom.ct import decode_ct, raw_pixel_length, stored_values
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.stack import check_stack
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import Reason

CONFIG = BuildConfig()


def _both(headers: list[InstanceHeader], config: BuildConfig = CONFIG) -> tuple[np.ndarray, np.ndarray]:
    slices = check_stack(headers, config).slices
    return decode_ct(headers, slices, config), decode_ct(headers, slices, config, raw=False)


_SERIES: dict[str, dict[str, str]] = {}


def _write(tmp: Path, pixels: np.ndarray, name: str = "ct.dcm", **attrs) -> InstanceHeader:
    # The files of one folder are one series (one study, one frame of reference), as check_stack expects.
    uids = _SERIES.setdefault(
        str(tmp), {"series_uid": generate_uid(), "study_uid": generate_uid(), "for_uid": generate_uid()}
    )
    ds = ct_dataset(pixels, (0.0, 0.0, 0.0), **uids)
    syntax = attrs.pop("syntax", None)
    for key, value in attrs.items():
        setattr(ds, key, value)
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    path = tmp / name
    ds.save_as(path, enforce_file_format=True)
    h = index_file(str(path))
    assert isinstance(h, InstanceHeader)
    return h


def _public_ct_headers(corpus: dict[str, InstanceHeader]) -> list[InstanceHeader]:
    return [h for h in corpus.values() if h.modality == "CT"]


def test_public_cts_raw_equals_pydicom(corpus_headers):
    raw = [h for h in _public_ct_headers(corpus_headers) if raw_pixel_length(h) is not None]
    assert len(raw) >= 10  # the raw path is the common case of the public corpus
    for h in raw:
        ds = pydicom.dcmread(h.url)
        data = Path(h.url).read_bytes()[h.pixel_data_offset : h.pixel_data_offset + raw_pixel_length(h)]
        got = stored_values(data, h)
        assert got.dtype == ds.pixel_array.dtype, h.url
        np.testing.assert_array_equal(got, ds.pixel_array, err_msg=h.url)


@pytest.mark.parametrize("name", sorted(COMPLETE_PAIRS))
def test_public_pairs_decode_identically(name, corpus_headers, public_config):
    headers = [h for h in headers_of(COMPLETE_PAIRS[name], corpus_headers) if h.modality == "CT"]
    fast, slow = _both(headers, public_config)
    assert fast.dtype == slow.dtype == np.int16
    np.testing.assert_array_equal(fast, slow)


def test_raw_path_reads_only_pixel_bytes(corpus_headers, monkeypatch):
    headers = headers_of(COMPLETE_PAIRS["liver"][1:], corpus_headers)
    assert all(raw_pixel_length(h) is not None for h in headers)
    monkeypatch.setattr(ct, "read_datasets", lambda *a, **k: pytest.fail("pydicom path taken"))
    decode_ct(headers, check_stack(headers, CONFIG).slices, CONFIG)


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "representation", "syntax"),
    [
        (np.int16, 16, 1, None),
        (np.uint16, 16, 0, None),
        (np.uint16, 12, 0, None),
        (np.int16, 12, 1, None),
        (np.uint16, 12, 0, ImplicitVRLittleEndian),
        (np.int16, 12, 1, ImplicitVRLittleEndian),
        (np.uint8, 8, 0, None),
        (np.uint8, 6, 0, None),
        (np.uint8, 7, 1, None),
    ],
)
def test_synthetic_slices_bit_identical(tmp_path, dtype, bits_stored, representation, syntax):
    rng = np.random.default_rng(bits_stored * 10 + representation)
    info = np.iinfo(dtype)
    # Every bit pattern, the bits above BitsStored included (masked or sign-extended by pydicom).
    pixels = rng.integers(info.min, info.max, size=(2, 24, 31), endpoint=True).astype(dtype)
    headers = []
    for k, plane in enumerate(pixels):
        attrs = {"BitsStored": bits_stored, "HighBit": bits_stored - 1, "PixelRepresentation": representation}
        if syntax is not None:
            attrs["syntax"] = syntax
        h = _write(tmp_path, plane, f"ct_{k}.dcm", **attrs)
        headers.append(replace(h, frame_positions=((0.0, 0.0, 2.5 * k),)))
    for h in headers:
        length = raw_pixel_length(h)
        assert length is not None
        ds = pydicom.dcmread(h.url)
        data = Path(h.url).read_bytes()[h.pixel_data_offset : h.pixel_data_offset + length]
        got = stored_values(data, h)
        assert got.dtype == ds.pixel_array.dtype
        np.testing.assert_array_equal(got, ds.pixel_array)
    for config in (CONFIG, BuildConfig(hu_clip=(-32768, 32767))):
        slices = check_stack(headers, config).slices
        fast = decode_ct(headers, slices, config)
        slow = decode_ct(headers, slices, config, raw=False)
        np.testing.assert_array_equal(fast, slow)


def test_non_integer_rescale_identical(tmp_path):
    pixels = np.arange(-600, 600, dtype=np.int16).reshape(30, 40)
    h = _write(tmp_path, pixels, RescaleSlope="0.37", RescaleIntercept="-1000.5")
    fast, slow = _both([h])
    np.testing.assert_array_equal(fast, slow)


def test_other_files_take_the_pydicom_path(tmp_path):
    pixels = np.arange(12, dtype=np.int16).reshape(3, 4)
    big = _write(tmp_path, pixels, "big.dcm", syntax=ExplicitVRBigEndian)
    rgb = _write(tmp_path, pixels, "rgb.dcm", PhotometricInterpretation="RGB")
    ok = _write(tmp_path, pixels, "ok.dcm")
    assert raw_pixel_length(ok) is not None
    assert raw_pixel_length(big) is None
    assert raw_pixel_length(rgb) is None
    assert raw_pixel_length(replace(ok, pixel_data_offset=None)) is None
    assert raw_pixel_length(replace(ok, pixel_data_length=10)) is None
    assert raw_pixel_length(replace(ok, rescale_slope=None)) is None


def test_header_records_the_pixel_data_value(tmp_path):
    pixels = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    for syntax in (None, ImplicitVRLittleEndian):
        h = _write(tmp_path, pixels, f"{syntax}.dcm", **({"syntax": syntax} if syntax else {}))
        assert (h.bits_allocated, h.bits_stored, h.pixel_representation) == (16, 16, 1)
        assert (h.samples_per_pixel, h.photometric_interpretation) == (1, "MONOCHROME2")
        assert h.pixel_data_length == pixels.nbytes
        assert h.pixel_data_offset + h.pixel_data_length == h.file_size
        data = Path(h.url).read_bytes()[h.pixel_data_offset :]
        assert data == pixels.tobytes()
        assert pickle.loads(pickle.dumps(h)) == h


def _errors_both_ways(h) -> tuple[QuarantineError, QuarantineError]:
    """The errors decode_ct raises for ``h`` on the raw path and on pydicom's."""
    slices = check_stack([h], CONFIG).slices
    with pytest.raises(QuarantineError) as fast:
        decode_ct([h], slices, CONFIG)
    with pytest.raises(QuarantineError) as slow:
        decode_ct([h], slices, CONFIG, raw=False)
    return fast.value, slow.value


def test_truncated_file_is_unreadable_on_the_raw_path(tmp_path):
    pixels = np.arange(400, dtype=np.int16).reshape(20, 20)
    h = _write(tmp_path, pixels)
    assert raw_pixel_length(h) is not None
    # Truncated after it was indexed: the ranged read returns fewer bytes than the header declared.
    os.truncate(h.url, h.file_size - 100)
    fast, slow = _errors_both_ways(h)
    assert fast.code == slow.code == Reason.UNREADABLE
    assert "bytes of PixelData" in fast.message  # raised by the raw read, not by pydicom


def test_missing_file_is_a_storage_error_on_the_raw_path(tmp_path):
    pixels = np.arange(400, dtype=np.int16).reshape(20, 20)
    h = _write(tmp_path, pixels)
    os.remove(h.url)
    fast, slow = _errors_both_ways(h)
    assert fast.code == slow.code == Reason.STORAGE_ERROR


def test_many_files_in_batches_through_memory_store(tmp_path, monkeypatch):
    import fsspec

    monkeypatch.setattr(ct, "RAW_BATCH", 3)
    rng = np.random.default_rng(7)
    mem = fsspec.filesystem("memory")
    headers = []
    for k in range(8):
        h = _write(tmp_path, rng.integers(-1024, 3000, size=(16, 16)).astype(np.int16), f"s{k}.dcm")
        url = f"memory://raw-batches/s{k}.dcm"
        mem.pipe_file(url, Path(h.url).read_bytes())
        h = index_file(url)
        assert isinstance(h, InstanceHeader)
        headers.append(replace(h, frame_positions=((0.0, 0.0, 2.5 * k),)))
    try:
        fast, slow = _both(headers)
        np.testing.assert_array_equal(fast, slow)
    finally:
        mem.rm("raw-batches", recursive=True)

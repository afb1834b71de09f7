"""The per-frame functional groups read from their bytes equal what pydicom reads, or fall back."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import fsspec
import numpy as np
import pydicom
import pytest
from dicom_corpus import DATA, HD, SEGS
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from hcc_shards.dicom.frames import PER_FRAME_GROUPS, raw_frame_facts
from hcc_shards.dicom.header import header_from_dataset
from hcc_shards.dicom.index import read_header_dataset


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def _both(data: bytes):
    """(header through the raw walk, header through pydicom, the raw facts) of one file's bytes."""
    fast_ds = _read(data)
    facts = raw_frame_facts(_read(data))
    fast = header_from_dataset(fast_ds, url="x", file_size=len(data), bytes_read=0)
    slow = header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0, fast=False)
    return fast, slow, facts


def _multiframe_files() -> list[Path]:
    out = []
    for path in sorted(DATA.rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "PerFrameFunctionalGroupsSequence" in ds:
            out.append(path)
    return out


MULTIFRAME = _multiframe_files()


def test_the_corpus_has_multiframe_files():
    # Every SEG of tests/data and the enhanced multi-frame images: the comparison below is not empty.
    assert len(MULTIFRAME) >= 12
    assert sum(1 for p in MULTIFRAME if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG") >= 10


@pytest.mark.parametrize("path", MULTIFRAME, ids=lambda p: str(p.relative_to(DATA)))
def test_raw_walk_equals_pydicom_on_the_corpus(path):
    data = path.read_bytes()
    fast, slow, facts = _both(data)
    assert fast == slow
    # pydicom reads a sequence of undefined length whole while it parses the file (it has to find
    # the end); only one of defined length is left raw for the fast path.
    raw = isinstance(_read(data)._dict[PER_FRAME_GROUPS], RawDataElement)
    assert (facts is not None) == raw
    if raw:
        assert len(facts[0]) == len(slow.frame_positions)


def test_the_raw_walk_serves_most_of_the_corpus():
    served = sum(1 for p in MULTIFRAME if raw_frame_facts(_read(p.read_bytes())) is not None)
    assert served >= 6


def _set_lengths(ds: Dataset, undefined: bool, top: bool = True) -> None:
    # Items and nested sequences of defined or undefined length; the per-frame sequence itself
    # always of defined length (else pydicom parses it while reading the file, as above).
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = undefined and not (top and elem.tag == PER_FRAME_GROUPS)
            for item in elem.value:
                item.is_undefined_length_sequence_item = undefined
                _set_lengths(item, undefined, top=False)


def _encoded(path: Path, syntax: str, undefined: bool) -> bytes:
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    _set_lengths(ds, undefined)
    buf = io.BytesIO()
    ds.save_as(
        buf, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True
    )
    return buf.getvalue()


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=["explicit", "implicit"]
)
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize(
    "path", [SEGS / "partial_overlaps.dcm", HD / "seg_image_ct_binary_overlap.dcm"], ids=lambda p: p.name
)
def test_raw_walk_reads_every_length_encoding(path, syntax, undefined):
    data = _encoded(path, syntax, undefined)
    fast, slow, facts = _both(data)
    assert facts is not None
    assert fast == slow
    assert any(f.segment_number for f in fast.seg_frames) and all(f.position for f in fast.seg_frames)
    original = _both(path.read_bytes())[1]
    assert (fast.seg_frames, fast.frame_positions) == (original.seg_frames, original.frame_positions)


def test_deferred_sequence_is_read_from_the_object_store(tmp_path):
    # A per-frame sequence above the index's deferred-read size, read through a range reader.
    ds = pydicom.dcmread(SEGS / "partial_overlaps.dcm")
    per_frame = ds["PerFrameFunctionalGroupsSequence"]
    per_frame.value = list(per_frame.value) * 100
    per_frame.is_undefined_length = False
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    fsspec.filesystem("memory").pipe_file("/frames/big-seg.dcm", buf.getvalue())
    remote, size, _ = read_header_dataset("memory://frames/big-seg.dcm")
    assert remote.get_item("PerFrameFunctionalGroupsSequence", keep_deferred=True).value is None  # deferred
    assert raw_frame_facts(remote) is not None
    remote, size, _ = read_header_dataset("memory://frames/big-seg.dcm")
    fast = header_from_dataset(remote, url="x", file_size=size, bytes_read=0)
    slow = header_from_dataset(_read(buf.getvalue()), url="x", file_size=size, bytes_read=0, fast=False)
    assert fast == slow and len(fast.seg_frames) == 100 * len(
        pydicom.dcmread(SEGS / "partial_overlaps.dcm").PerFrameFunctionalGroupsSequence
    )


def _edited(path: Path, edit) -> bytes:
    ds = pydicom.dcmread(path)
    edit(ds)
    _set_lengths(ds, undefined=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    # A value pydicom would refuse to write, put in afterwards at the same length.
    return buf.getvalue().replace(b"-888.125", b"-8x8.125")


def _two_uids(ds: Dataset) -> None:
    src = ds.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    src.ReferencedSOPInstanceUID = [src.ReferencedSOPInstanceUID, "1.2.3.4"]


def _bad_position(ds: Dataset) -> None:
    item = ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
    item.ImagePositionPatient = [-777.125, -888.125, 3.0]


def _no_segment_item(ds: Dataset) -> None:
    # One frame without its SegmentIdentificationSequence: the shared groups (none here) give 0.
    del ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence
    ds.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence = copy.deepcopy(
        ds.PerFrameFunctionalGroupsSequence[1].SegmentIdentificationSequence
    )


@pytest.mark.parametrize(
    ("edit", "falls_back"),
    [(_two_uids, True), (_bad_position, True), (_no_segment_item, False)],
    ids=["uid-list", "unparsable-position", "shared-segment"],
)
def test_unusual_values_fall_back_to_pydicom_or_agree(edit, falls_back):
    data = _edited(SEGS / "partial_overlaps.dcm", edit)
    facts = raw_frame_facts(_read(data))
    assert (facts is None) == falls_back
    try:
        slow = header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0, fast=False)
    except Exception as exc:  # pydicom's own verdict on the value; the fast path must give the same
        with pytest.raises(type(exc)):
            header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0)
        return
    assert header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0) == slow


def test_garbled_sequence_bytes_fall_back():
    ds = pydicom.dcmread(SEGS / "partial_overlaps.dcm")
    _set_lengths(ds, undefined=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert raw_frame_facts(_read(buf.getvalue())) is not None
    data = bytearray(buf.getvalue())
    # Corrupt the first item tag of the per-frame sequence (defined length, explicit VR).
    at = data.find(b"\x00\x52\x30\x92")
    assert at > 0
    item = data.find(b"\xfe\xff\x00\xe0", at)
    data[item : item + 4] = b"\x08\x00\x18\x00"
    raw = _read(bytes(data))
    assert raw_frame_facts(raw) is None


def _dicom_files() -> list[Path]:
    out = []
    for path in sorted(DATA.rglob("*")):
        if path.is_file():
            try:
                pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            out.append(path)
    return out


DICOM_FILES = _dicom_files()


@pytest.mark.parametrize("path", DICOM_FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_plain_values_equal_pydicom_on_every_corpus_file(path):
    # Top-level plain values are converted without pydicom's element machinery: same header.
    data = path.read_bytes()
    fast = header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0)
    slow = header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0, fast=False)
    assert fast == slow


def _edited_ct(edit) -> bytes:
    from builders import ct_dataset

    ds = ct_dataset(
        np.zeros((4, 4), np.int16), (1.5, -2.25, 30.0), series_uid="1.2.3", study_uid="1.2", for_uid="1.9"
    )
    edit(ds)
    buf = io.BytesIO()
    ds.save_as(
        buf, implicit_vr=ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian, enforce_file_format=True
    )
    return buf.getvalue()


def _implicit(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]


def _odd_values(ds: Dataset) -> None:
    ds.SeriesNumber = None  # empty IS
    ds.SliceThickness = "2.50"
    ds.PatientID = "Ünïcode"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.AcquisitionNumber = "0"


@pytest.mark.parametrize(
    "edit", [lambda ds: None, _implicit, _odd_values], ids=["explicit", "implicit", "odd-values"]
)
def test_plain_values_equal_pydicom_on_built_slices(edit):
    data = _edited_ct(edit)
    fast = header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0)
    slow = header_from_dataset(_read(data), url="x", file_size=len(data), bytes_read=0, fast=False)
    assert fast == slow
    assert fast.frame_positions == ((1.5, -2.25, 30.0),) and fast.rows == 4

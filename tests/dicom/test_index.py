"""Header indexing: small range reads, every file a header or a record, headers that pickle."""

from __future__ import annotations

import pickle
from dataclasses import replace

import fsspec
import pydicom
from dicom_corpus import DATA, HD, SEGS
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import FIRST_RANGE_BYTES, index_file
from hcc_shards.quarantine import QuarantineRecord, Reason


def test_ct_header_fields():
    h = index_file(str(SEGS / "ct-3slice" / "01.dcm"))
    assert isinstance(h, InstanceHeader)
    assert h.modality == "CT" and not h.is_seg
    assert h.patient_id == "99000"
    assert (h.rows, h.columns, h.number_of_frames) == (512, 512, 1)
    assert h.frame_positions == ((-235.199997, -226.800003, -126.690002),)
    assert h.pixel_spacing == (0.810547, 0.810547)
    assert h.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert h.acquisition_number == 1
    assert h.rescale_slope == 1.0
    assert h.transfer_syntax_uid == "1.2.840.10008.1.2"
    assert h.file_size == 526474


def test_seg_header_fields():
    h = index_file(str(SEGS / "partial_overlaps.dcm"))
    assert isinstance(h, InstanceHeader) and h.is_seg
    assert h.segmentation_type == "BINARY"
    assert [s.label for s in h.segments] == ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"]
    assert h.segments[1].property_type == "SCT:51114001"
    assert h.segments[1].property_meaning == "Artery"
    assert len(h.seg_frames) == 7
    assert sorted({f.segment_number for f in h.seg_frames}) == [1, 2, 3, 4, 5]
    assert all(len(f.sources) == 1 and f.position is not None for f in h.seg_frames)
    (rs,) = h.referenced_series
    assert rs.series_instance_uid == "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1"
    assert len(rs.instance_uids) == 3
    assert len(h.referenced_instance_uids) == 3


def test_multiframe_ct_header_has_per_frame_positions():
    h = index_file(str(SEGS / "23x38x3" / "multiframe" / "mf.dcm"))
    assert isinstance(h, InstanceHeader) and h.is_multiframe
    assert [p[2] for p in h.frame_positions] == [-177.75, -175.25, -172.75]
    assert h.pixel_spacing == (0.7, 0.7)
    assert h.rescale_slope == 1.0 and h.rescale_intercept == 0.0


def test_header_pickles():
    h = index_file(str(HD / "seg_image_ct_binary_overlap.dcm"))
    assert pickle.loads(pickle.dumps(h)) == h


def test_large_files_are_read_by_a_small_range():
    """A 514 KiB CT slice and a 100 KiB SEG: only the first range request is needed."""
    for path in (SEGS / "ct-3slice" / "01.dcm", SEGS / "liver.dcm"):
        h = index_file(str(path))
        assert h.bytes_read == FIRST_RANGE_BYTES
        assert h.bytes_read < h.file_size / 5


def test_range_reads_through_an_fsspec_filesystem():
    fs = fsspec.filesystem("memory")
    src = (SEGS / "ct-3slice" / "02.dcm").read_bytes()
    fs.pipe_file("/idx/flat/0001.dcm", src)
    h = index_file("memory://idx/flat/0001.dcm")
    assert isinstance(h, InstanceHeader)
    assert h.url == "memory://idx/flat/0001.dcm"
    assert h.file_size == len(src) and h.bytes_read == FIRST_RANGE_BYTES
    local = index_file(str(SEGS / "ct-3slice" / "02.dcm"))
    assert replace(local, url=h.url) == h


def test_object_store_header_read_fetches_a_small_range(s3):
    """Measured on the S3 emulator: header bytes fetched per CT slice and per SEG."""
    bucket = s3.make_bucket("hdr-range")
    fs = fsspec.filesystem("s3", **s3.storage_options)
    measured = {}
    for name, path in (("ct", SEGS / "ct-3slice" / "01.dcm"), ("seg", SEGS / "liver.dcm")):
        url = f"{bucket}/{name}.dcm"
        fs.pipe_file(url, path.read_bytes())
        h = index_file(url, s3.storage_options)
        assert isinstance(h, InstanceHeader), h
        measured[name] = (h.bytes_read, h.file_size)
    assert measured["ct"] == (FIRST_RANGE_BYTES, 526474)
    assert measured["seg"] == (FIRST_RANGE_BYTES, 102630)


def test_non_dicom_files_become_records(tmp_path):
    (tmp_path / "truth.json").write_text('{"patients": []}')
    (tmp_path / "empty.dcm").write_bytes(b"")
    for path, code in (
        (DATA / "README.md", Reason.NOT_DICOM),
        (DATA / "pydicom" / "LICENSE", Reason.NOT_DICOM),
        (tmp_path / "truth.json", Reason.NOT_DICOM),
        (tmp_path / "empty.dcm", Reason.UNREADABLE),
        (tmp_path / "absent.dcm", Reason.STORAGE_ERROR),
    ):
        rec = index_file(str(path))
        assert isinstance(rec, QuarantineRecord), path
        assert (rec.code, rec.stage, rec.url) == (code, "index", str(path))


def test_truncated_file_becomes_a_record(tmp_path):
    data = (SEGS / "partial_overlaps.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:3000])  # inside the per-frame functional groups
    rec = index_file(str(path))
    assert isinstance(rec, QuarantineRecord)
    assert rec.code in (Reason.UNREADABLE, Reason.NOT_DICOM)


def test_dicomdir_becomes_a_record(tmp_path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "HCC"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = []
    path = tmp_path / "DICOMDIR"
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage
    rec = index_file(str(path))
    assert isinstance(rec, QuarantineRecord) and rec.code == Reason.NOT_DICOM
    assert "DICOMDIR" in rec.message


def test_other_modalities_become_records(tmp_path):
    ds = pydicom.dcmread(SEGS / "ct-3slice" / "01.dcm")
    ds.Modality = "MR"
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    rec = index_file(str(path))
    assert isinstance(rec, QuarantineRecord) and rec.code == Reason.UNSUPPORTED_MODALITY
    assert rec.sop_instance_uid == ds.SOPInstanceUID


def test_memory_bomb_is_refused_from_the_header():
    rec = index_file(str(SEGS / "ct-3slice" / "01.dcm"), config=BuildConfig(max_voxels=1000))
    assert isinstance(rec, QuarantineRecord) and rec.code == Reason.IMAGE_TOO_LARGE
    assert "512x512x1" in rec.message


def test_large_header_values_are_read_from_the_object_store_not_a_local_path(tmp_path):
    """A SEG whose per-frame sequence is larger than the deferred-read size, on a non-local
    filesystem: the deferred value must come from the same range reader, not from reopening the
    object's path on the local disk (which does not exist there)."""
    ds = pydicom.dcmread(SEGS / "partial_overlaps.dcm")
    per_frame = ds["PerFrameFunctionalGroupsSequence"]
    items = list(per_frame.value)
    per_frame.value = items * 200  # far more than 64 KB, written with a defined length
    per_frame.is_undefined_length = False
    local = tmp_path / "big-seg.dcm"
    ds.save_as(local, enforce_file_format=True)
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/idx/deferred/seg.dcm", local.read_bytes())
    from_local = index_file(str(local))
    from_memory = index_file("memory://idx/deferred/seg.dcm")
    assert isinstance(from_local, InstanceHeader) and len(from_local.seg_frames) == len(items) * 200
    assert isinstance(from_memory, InstanceHeader), from_memory
    assert replace(from_local, url=from_memory.url, bytes_read=from_memory.bytes_read) == from_memory

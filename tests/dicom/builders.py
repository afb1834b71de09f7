"""Small DICOM builders for the DICOM core tests: CT slices written with pydicom, headers in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from hcc_shards.dicom.header import InstanceHeader

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def ct_dataset(
    pixels: np.ndarray,
    position: Sequence[float],
    *,
    series_uid: str,
    study_uid: str,
    for_uid: str,
    patient_id: str = "P1",
    acquisition: int | None = 1,
    instance: int = 1,
    spacing: tuple[float, float] = (0.8, 0.8),
    orientation: Sequence[float] = AXIAL,
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> Dataset:
    """A minimal but valid single-frame CT image (signed 16-bit unless ``pixels`` is uint8)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.PatientName = f"{patient_id}^Test"
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "O"
    ds.StudyDate = "20200101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "hcc-shards tests"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = for_uid
    ds.SeriesNumber = 2
    ds.SeriesDescription = "LIVER 3 PHASE (AP)"
    ds.InstanceNumber = instance
    if acquisition is not None:
        ds.AcquisitionNumber = acquisition
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.PixelSpacing = [f"{v:.6f}" for v in spacing]
    ds.SliceThickness = "2.5"
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleType = "HU"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    eight = pixels.dtype == np.uint8
    ds.BitsAllocated = 8 if eight else 16
    ds.BitsStored = 8 if eight else 16
    ds.HighBit = 7 if eight else 15
    ds.PixelRepresentation = 0 if eight or pixels.dtype == np.uint16 else 1
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write_series(
    folder: Path,
    volume: np.ndarray,
    positions: Sequence[Sequence[float]],
    acquisitions: Sequence[int | None] | None = None,
    **kwargs,
) -> list[Path]:
    """Write one CT file per slice of ``volume`` (z, y, x) at ``positions``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("series_uid", generate_uid())
    kwargs.setdefault("study_uid", generate_uid())
    kwargs.setdefault("for_uid", generate_uid())
    paths = []
    for k, (plane, pos) in enumerate(zip(volume, positions, strict=True)):
        acq = acquisitions[k] if acquisitions is not None else 1
        ds = ct_dataset(plane, pos, acquisition=acq, instance=k + 1, **kwargs)
        path = folder / f"ct_{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def header(
    z: float,
    *,
    series_uid: str = "1.2.3",
    acquisition: int | None = 1,
    xy: tuple[float, float] = (0.0, 0.0),
    rows: int = 4,
    columns: int = 4,
    spacing: tuple[float, float] = (0.8, 0.8),
    orientation: Sequence[float] = AXIAL,
    uid: str | None = None,
) -> InstanceHeader:
    """An in-memory CT header for stack and pairing unit tests."""
    sop = uid or f"9.{series_uid}.{acquisition}.{z:+.4f}".replace("-", "m").replace("+", "p")
    return InstanceHeader(
        url=f"memory://ct/{sop}.dcm",
        file_size=1000,
        bytes_read=1000,
        sop_class_uid=str(CTImageStorage),
        sop_instance_uid=sop,
        modality="CT",
        patient_id="P1",
        study_instance_uid="1.2",
        series_instance_uid=series_uid,
        series_number=2,
        series_description="",
        acquisition_number=acquisition,
        instance_number=None,
        frame_of_reference_uid="1.9",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        transfer_syntax_uid=str(ExplicitVRLittleEndian),
        rows=rows,
        columns=columns,
        number_of_frames=1,
        bits_allocated=16,
        orientation=tuple(orientation),
        pixel_spacing=spacing,
        slice_thickness=2.5,
        spacing_between_slices=None,
        frame_positions=((xy[0], xy[1], z),),
        rescale_slope=1.0,
        rescale_intercept=-1024.0,
    )


def headers(zs: Sequence[float], **kwargs) -> list[InstanceHeader]:
    return [header(z, **kwargs) for z in zs]


def moved(h: InstanceHeader, position: Sequence[float]) -> InstanceHeader:
    return replace(h, frame_positions=(tuple(float(v) for v in position),))


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path)

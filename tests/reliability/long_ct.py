"""A long CT series (hundreds of slices) with its SEG, written with pydicom and highdicom: the input of
the memory-bound test. The synthetic cohort stops at 185 slices, as the real collection does."""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from hcc_shards.synth.uids import derive_uid

PATIENT = "HCC_600"


def _phantom(slices: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """int16 HU volume and bool (z, y, x, 2) masks (liver, mass): an ellipsoid liver with a tumour."""
    z, y, x = np.ogrid[:slices, :size, :size]
    c, r = (size - 1) / 2.0, size / 2.0
    body = ((y - c) / (0.9 * r)) ** 2 + ((x - c) / (0.95 * r)) ** 2 <= 1.0
    liver = ((z - slices / 2) / (0.35 * slices)) ** 2 + ((y - c) / (0.5 * r)) ** 2 + (
        (x - 0.8 * c) / (0.45 * r)
    ) ** 2 <= 1
    mass = ((z - slices / 2) / (0.08 * slices)) ** 2 + ((y - c) / (0.15 * r)) ** 2 + (
        (x - 0.8 * c) / (0.15 * r)
    ) ** 2 <= 1
    body, liver, mass = np.broadcast_arrays(body, liver, mass)
    hu = np.where(body, 40, -1000).astype(np.int16)
    hu[liver] = 60
    hu[mass] = 90
    return hu, np.stack([liver & ~mass, mass], axis=-1)


def write_long_ct(root: Path, slices: int = 600, size: int = 64, spacing_mm: float = 0.8) -> int:
    """Write one patient: ``slices`` axial CT slices of ``size`` x ``size`` and a SEG; return the file count."""
    hu, masks = _phantom(slices, size)
    masks = np.ascontiguousarray(masks)
    study, series, frame = (derive_uid(600, PATIENT, k) for k in ("study", "series", "for"))
    folder = root / PATIENT / "study" / "series-2"
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for k in range(slices):
        ds = _slice(hu[k], k, study, series, frame, spacing_mm)
        ds.save_as(folder / f"1-{k + 1:04d}.dcm", enforce_file_format=True)
        del ds.PixelData
        sources.append(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=masks.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[
                hd.seg.SegmentDescription(
                    segment_number=n,
                    segment_label=label,
                    segmented_property_category=codes.SCT.AnatomicalStructure,
                    segmented_property_type=prop,
                    algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                )
                for n, (label, prop) in enumerate((("Liver", codes.SCT.Liver), ("Mass", codes.SCT.Mass)), 1)
            ],
            series_instance_uid=derive_uid(600, PATIENT, "seg-series"),
            series_number=300,
            sop_instance_uid=derive_uid(600, PATIENT, "seg"),
            instance_number=1,
            manufacturer="hcc-shards tests",
            manufacturer_model_name="LONG",
            software_versions="1",
            device_serial_number="1",
            omit_empty_frames=True,
        )
    seg_dir = root / PATIENT / "study" / "series-300"
    seg_dir.mkdir(parents=True, exist_ok=True)
    seg.save_as(seg_dir / "1-1.dcm")
    return slices + 1


def _slice(plane: np.ndarray, k: int, study: str, series: str, frame: str, spacing_mm: float) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = derive_uid(600, PATIENT, "ct", k)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = PATIENT
    ds.PatientName = PATIENT
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20200101", "120000", "1", "1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "hcc-shards tests"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 2, k + 1, 1
    ds.SeriesDescription = "LIVER LONG"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = ["-25", "-25", f"{-300.0 + k * 1.0:.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [f"{spacing_mm:g}", f"{spacing_mm:g}"]
    ds.SliceThickness = "1"
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "HU"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = plane.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(plane, dtype="<i2").tobytes()
    return ds

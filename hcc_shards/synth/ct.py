"""CT Image Storage datasets (single-frame, one per slice) for one planned series."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from hcc_shards.geometry import Geometry
from hcc_shards.synth.phantom import Raster, rasterize, render_hu
from hcc_shards.synth.plan import PatientPlan, SeriesPlan, StudyPlan
from hcc_shards.synth.uids import derive_uid

IMPLEMENTATION_CLASS_UID = "2.25.255731936458164233380458376402306745177"
"""Fixed implementation UID of files written by hcc_shards.synth."""
IMPLEMENTATION_VERSION = "HCC_SHARDS_SYN1"
MANUFACTURER = "HCC-SHARDS SYNTH"


@dataclass(frozen=True, eq=False)
class RenderedSeries:
    """A series' datasets and the phantom raster they were rendered from."""

    datasets: tuple[Dataset, ...]
    """One dataset per slice and acquisition, in InstanceNumber order."""
    raster: Raster
    """Tissues and segment masks on the series grid."""


def ds_str(value: float) -> str:
    """A Decimal String of at most 16 characters that reads back as ``value`` (or within 1e-9)."""
    for digits in range(10, 2, -1):
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        if text in ("-0", ""):
            text = "0"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot format {value!r} as a DICOM DS of at most 16 characters")


def min_feature_mm(plan: PatientPlan, geometry: Geometry) -> float:
    """Smallest structure kept on a grid: coarse test grids widen vessels so no label vanishes."""
    if plan.size == "small":
        return max(geometry.spacing)
    return max(geometry.spacing[1:])


def slice_positions(series: SeriesPlan) -> np.ndarray:
    """(nz, 3) ImagePositionPatient of every slice in array order, with the rounding quirk applied."""
    g = series.geometry
    nz = g.shape[0]
    pos = g.index_to_world(np.stack([np.arange(nz), np.zeros(nz), np.zeros(nz)], axis=1))
    if series.rounded_positions:
        # Sub-micron jitter: a regular grid once positions are compared with a tolerance.
        jitter = (((np.arange(nz) * 7919) % 11) - 5) * 0.0007
        pos[:, 2] += jitter
        return np.round(pos, 5)
    return np.round(pos, 4)


def render_series(plan: PatientPlan, study_index: int, series_index: int) -> RenderedSeries:
    """Rasterise the phantom on the series grid and build every slice of every acquisition."""
    study = plan.studies[study_index]
    series = study.series[series_index]
    raster = rasterize(plan.anatomy, series.geometry, min_feature_mm=min_feature_mm(plan, series.geometry))
    datasets: list[Dataset] = []
    positions = slice_positions(series)
    nz = series.geometry.shape[0]
    for a, (acq_number, phase) in enumerate(series.acquisitions):
        rng = np.random.default_rng([plan.seed, plan.index, study_index, series.series_number, acq_number])
        hu = render_hu(raster, phase, rng)
        # Instance 1 is the most superior slice, as scanners usually number them.
        order = np.argsort(-positions[:, 2], kind="stable") if series.kind != "localizer" else np.arange(nz)
        for n, z in enumerate(order):
            instance = a * nz + n + 1
            datasets.append(_slice_dataset(plan, study, series, acq_number, a, instance, positions[z], hu[z]))
    return RenderedSeries(datasets=tuple(datasets), raster=raster)


def _image_type(series: SeriesPlan) -> list[str]:
    if series.kind == "localizer":
        return ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    if series.kind == "derived":
        return ["DERIVED", "SECONDARY", "AXIAL"]
    return ["ORIGINAL", "PRIMARY", "AXIAL"]


def _slice_dataset(
    plan: PatientPlan,
    study: StudyPlan,
    series: SeriesPlan,
    acq_number: int,
    acq_index: int,
    instance: int,
    position: np.ndarray,
    hu: np.ndarray,
) -> Dataset:
    g = series.geometry
    sop_uid = derive_uid(plan.seed, plan.patient_id, study.study_uid, series.series_uid, instance)
    acq_time = _add_seconds(series.time, 40 * acq_index)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = _image_type(series)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study.date
    ds.SeriesDate = study.date
    ds.AcquisitionDate = study.date
    ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = series.time
    ds.AcquisitionTime = acq_time
    ds.ContentTime = acq_time
    ds.AccessionNumber = study.accession
    ds.Modality = "CT"
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = "PHANTOM"
    ds.PatientName = plan.patient_id
    ds.PatientID = plan.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = plan.sex
    ds.PatientAge = f"{plan.age:03d}Y"
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = ds_str(g.spacing[0])
    ds.KVP = "120"
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.StudyID = str(plan.studies.index(study) + 1)
    ds.SeriesNumber = series.series_number
    ds.AcquisitionNumber = acq_number
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [ds_str(v) for v in position]
    d = g.direction
    # ImageOrientationPatient: row cosine (array x), then column cosine (array y).
    ds.ImageOrientationPatient = [ds_str(v) for v in (*d[:, 2], *d[:, 1])]
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    if series.kind != "localizer":
        ds.SliceLocation = ds_str(float(position[2]))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = g.shape[1]
    ds.Columns = g.shape[2]
    ds.PixelSpacing = [ds_str(g.spacing[1]), ds_str(g.spacing[2])]
    ds.BitsAllocated = 16
    if series.signed:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept = "0"
        stored = np.clip(np.rint(hu), -1024, 3071).astype("<i2")
    else:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.RescaleIntercept = "-1024"
        stored = np.clip(np.rint(hu) + 1024, 0, 4095).astype("<u2")
    ds.RescaleSlope = "1"
    if series.kind != "localizer":
        ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.PixelData = stored.tobytes()
    return ds


def _add_seconds(hhmmss: str, seconds: int) -> str:
    total = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6]) + seconds
    total %= 24 * 3600
    return f"{total // 3600:02d}{total % 3600 // 60:02d}{total % 60:02d}"

"""One case's labels (stored, or a prediction on the stored grid) as a DICOM SEG over the original CT.

Order of operations: 1. the CT grid and CT instances from the case's ``source_geometry`` and
``dicom_source`` attributes (docs/FORMAT.md), 2. the labels resampled from the stored grid to the
CT grid by nearest neighbour (both grids share origin and direction, so per axis CT voxel ``j``
takes stored voxel ``floor(j * s / t + 0.5)``), 3. one source dataset per CT slice holding the
attributes highdicom copies and references (no pixels), 4. a BINARY highdicom Segmentation with
one segment per label present, 5. the file written whole through fsspec.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.read import Case
from hcc_shards.shards.atomic import put_bytes_atomic

SEG_SERIES_NUMBER = 301
_SOFTWARE = "hcc-shards"


def _property(name: str) -> tuple[Any, Any]:
    from pydicom.sr.codedict import codes

    table = {
        "liver": (codes.SCT.AnatomicalStructure, codes.SCT.Liver),
        "tumor": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Mass),
        "portal_vein": (codes.SCT.AnatomicalStructure, codes.SCT.PortalVein),
        "aorta": (codes.SCT.AnatomicalStructure, codes.SCT.AbdominalAorta),
    }
    return table.get(name, (codes.SCT.AnatomicalStructure, codes.SCT.AnatomicalStructure))


def on_ct_grid(label: np.ndarray, stored: Geometry, ct: Geometry) -> np.ndarray:
    """``label`` (on the stored grid) on the CT grid by nearest neighbour (ties to the higher index)."""
    if not np.allclose(stored.direction, ct.direction, atol=1e-6) or not np.allclose(
        stored.origin, ct.origin, atol=1e-3
    ):
        raise ValueError("stored and CT grids must share origin and direction (docs/FORMAT.md, Resampling)")
    index = [
        np.minimum(np.floor(np.arange(n) * s / t + 0.5).astype(np.int64), m - 1)
        for n, s, t, m in zip(ct.shape, ct.spacing, stored.spacing, stored.shape, strict=True)
    ]
    return label[np.ix_(*index)]


def _sources(source: dict[str, Any], ct: Geometry) -> list[Any]:
    from pydicom.dataset import Dataset

    instances = source["instances"]
    if len(instances) != ct.shape[0]:
        raise ValueError(f"dicom_source names {len(instances)} CT slices, the CT grid has {ct.shape[0]}")
    if any(int(frame) != 0 for _, frame in instances):
        raise ValueError("CT slices that are frames of a multi-frame instance are not supported")
    d = ct.direction
    positions = ct.index_to_world(
        np.stack([np.arange(ct.shape[0]), np.zeros(ct.shape[0]), np.zeros(ct.shape[0])], 1)
    )
    out = []
    for (uid, _), pos in zip(instances, positions, strict=True):
        ds = Dataset()
        ds.SOPClassUID = source["sop_class_uid"]
        ds.SOPInstanceUID = uid
        ds.StudyInstanceUID = source["study_instance_uid"]
        ds.SeriesInstanceUID = source["series_instance_uid"]
        ds.FrameOfReferenceUID = source["frame_of_reference_uid"]
        ds.PatientID = source.get("patient_id", "")
        for keyword in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID"):
            setattr(ds, keyword, "")
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.Modality = "CT"
        ds.Rows, ds.Columns = int(ct.shape[1]), int(ct.shape[2])
        ds.PixelSpacing = [round(float(ct.spacing[1]), 6), round(float(ct.spacing[2]), 6)]
        ds.SliceThickness = round(float(ct.spacing[0]), 6)
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*d[:, 2], *d[:, 1])]
        ds.ImagePositionPatient = [round(float(v), 4) for v in pos]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        out.append(ds)
    return out


def seg_dataset(case: Case, label: np.ndarray | None = None, *, algorithm: str | None = None) -> Any:
    """The DICOM SEG (a pydicom Dataset) of ``label`` (default: the stored label) over the case's CT.

    ``label`` is uint8 (z, y, x) on the stored grid, values as the dataset's labels. ``algorithm``
    names the model of a prediction (segments AUTOMATIC); without it the segments are MANUAL.
    """
    import highdicom as hd

    attrs = case.attributes
    source = attrs.get("dicom_source")
    if not isinstance(source, dict):
        raise ValueError(
            f"case {case.case_id!r} has no dicom_source attribute (built before it was recorded)"
        )
    stored = case.geometry
    src = attrs.get("source_geometry") or {}
    ct = Geometry(shape=tuple(src["shape_zyx"]), affine=np.asarray(src["affine"]))
    label = np.asarray(case.label) if label is None else np.asarray(label)
    if label.shape != stored.shape:
        raise ValueError(f"label shape {label.shape} != stored shape {stored.shape}")
    on_ct = on_ct_grid(label.astype(np.uint8, copy=False), stored, ct)
    names = case.dataset.label_names
    present = [v for v in sorted(names) if (on_ct == v).any()]
    if not present:
        raise ValueError(f"case {case.case_id!r}: no labelled voxel to export")
    kind = (
        hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if algorithm else hd.seg.SegmentAlgorithmTypeValues.MANUAL
    )
    ident = None
    if algorithm:
        from pydicom.sr.codedict import codes

        ident = hd.AlgorithmIdentificationSequence(
            name=algorithm, version="1", family=codes.cid7162.ArtificialIntelligence
        )
    descriptions = []
    for n, value in enumerate(present, start=1):
        category, prop = _property(names[value])
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=names[value],
                segmented_property_category=category,
                segmented_property_type=prop,
                algorithm_type=kind,
                algorithm_identification=ident,
            )
        )
    masks = np.stack([on_ct == v for v in present], axis=-1).astype(np.uint8)
    return hd.seg.Segmentation(
        source_images=_sources(source, ct),
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=_SOFTWARE,
        manufacturer_model_name=_SOFTWARE,
        software_versions=_SOFTWARE,
        device_serial_number="0",
        content_label="HCC_SHARDS",
        series_description=f"{'Prediction' if algorithm else 'Segmentation'} {case.case_id}",
        omit_empty_frames=True,
    )


def export_seg(
    case: Case,
    dest: str,
    storage_options: dict[str, Any] | None = None,
    *,
    label: np.ndarray | None = None,
    algorithm: str | None = None,
) -> str:
    """Write :func:`seg_dataset` to the file ``dest`` (fsspec URL), whole; returns its SOPInstanceUID."""
    seg = seg_dataset(case, label, algorithm=algorithm)
    buf = io.BytesIO()
    seg.save_as(buf, enforce_file_format=True)
    put_bytes_atomic(dest, buf.getvalue(), storage_options)
    return str(seg.SOPInstanceUID)

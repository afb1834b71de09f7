"""The patient's one DICOM-SEG: a multi-frame BINARY Segmentation built with highdicom."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from hcc_shards.geometry import Geometry
from hcc_shards.synth.ct import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, MANUFACTURER, ds_str
from hcc_shards.synth.plan import PatientPlan
from hcc_shards.synth.uids import derive_uid

SEG_SERIES_NUMBER = 300
SEG_SERIES_DESCRIPTION = "Segmentation"

_HIGHDICOM_UID_ROOT = "1.2.826.0.1.3680043.10.511."


def segment_descriptions() -> list[hd.seg.SegmentDescription]:
    """Liver, Mass, Portal vein, Abdominal aorta, with SNOMED CT category and type codes."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name="AMIRA", version="5.4", family=codes.cid7162.ManualProcessing
    )
    items = (
        ("Liver", codes.SCT.AnatomicalStructure, codes.SCT.Liver),
        ("Mass", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Mass),
        ("Portal vein", codes.SCT.AnatomicalStructure, codes.SCT.PortalVein),
        ("Abdominal aorta", codes.SCT.AnatomicalStructure, codes.SCT.AbdominalAorta),
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=prop,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
        )
        for n, (label, category, prop) in enumerate(items, start=1)
    ]


def build_seg(
    plan: PatientPlan,
    sources: Sequence[Dataset],
    masks: np.ndarray,
    grid: Geometry | None,
) -> Dataset:
    """The SEG over ``sources`` (the annotated acquisition, one dataset per mask slice, in array order).

    ``masks`` is bool (z, y, x, 4) on the CT grid, or on ``grid`` when that is given (same slice
    positions, other in-plane sampling). Frames without any segment voxel are omitted.
    """
    if plan.seg is None:
        raise ValueError(f"{plan.patient_id} has no SEG planned (quirk {plan.quirk})")
    if masks.ndim != 4 or masks.shape[0] != len(sources) or masks.shape[3] != 4:
        raise ValueError(
            f"masks must be (z, y, x, 4) with z = {len(sources)} source slices, got {masks.shape}"
        )
    study = plan.studies[plan.seg.study_index]
    geometry_kwargs = {} if grid is None else _grid_kwargs(grid)
    with warnings.catch_warnings():
        # The collection's PatientName is the bare id ("HCC_001"); highdicom warns about it.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        seg = _segmentation(plan, sources, masks, study.date, geometry_kwargs)
    seg.InstanceCreationDate = study.date
    seg.InstanceCreationTime = "235959"
    seg.BodyPartExamined = "ABDOMEN"
    seg.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    seg.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if not plan.seg.with_references:
        _drop_references(seg)
    freeze_highdicom_values(seg, plan.seed, plan.patient_id, f"{study.date}235959")
    return seg


def _segmentation(
    plan: PatientPlan, sources: Sequence[Dataset], masks: np.ndarray, date: str, geometry_kwargs: dict
) -> hd.seg.Segmentation:
    if plan.seg is None:
        raise ValueError(f"{plan.patient_id} has no SEG planned")
    # Dates and times are fixed (never 'now') so that the same seed gives the same bytes.
    return hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=masks.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(),
        series_instance_uid=plan.seg.series_uid,
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=plan.seg.sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="PHANTOM",
        software_versions="1",
        device_serial_number="0001",
        content_description="Liver, tumour and vessels",
        content_label="SEGMENTATION",
        content_creator_name="SYNTH^ANNOTATOR",
        omit_empty_frames=True,
        series_description=SEG_SERIES_DESCRIPTION,
        content_date=date,
        content_time="235959",
        series_date=date,
        series_time="235959",
        **geometry_kwargs,
    )


def _grid_kwargs(grid: Geometry) -> dict:
    d = grid.direction
    iop = [float(ds_str(v)) for v in (*d[:, 2], *d[:, 1])]
    nz = grid.shape[0]
    positions = grid.index_to_world(np.stack([np.arange(nz), np.zeros(nz), np.zeros(nz)], axis=1))
    return {
        "pixel_measures": hd.PixelMeasuresSequence(
            pixel_spacing=(float(ds_str(grid.spacing[1])), float(ds_str(grid.spacing[2]))),
            slice_thickness=float(ds_str(grid.spacing[0])),
        ),
        "plane_orientation": hd.PlaneOrientationSequence(coordinate_system="PATIENT", image_orientation=iop),
        "plane_positions": [
            hd.PlanePositionSequence(
                coordinate_system="PATIENT", image_position=[float(ds_str(v)) for v in np.round(p, 4)]
            )
            for p in positions
        ],
    }


def _drop_references(seg: Dataset) -> None:
    # Like HCC_048: nothing in the SEG names the CT; only the frame of reference and the
    # per-frame positions tie it to its series.
    if "ReferencedSeriesSequence" in seg:
        del seg.ReferencedSeriesSequence
    if "SourceImageSequence" in seg:
        del seg.SourceImageSequence
    if "StudiesContainingOtherReferencedInstancesSequence" in seg:
        del seg.StudiesContainingOtherReferencedInstancesSequence
    for item in seg.PerFrameFunctionalGroupsSequence:
        if "DerivationImageSequence" in item:
            del item.DerivationImageSequence
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "DerivationImageSequence" in shared:
        del shared.DerivationImageSequence


def freeze_highdicom_values(seg: Dataset, seed: int, key: str, date_time: str) -> None:
    """Make a highdicom SEG reproducible: the UIDs highdicom drew at random (e.g.
    DimensionOrganizationUID) derived from ``seed`` and ``key``, keeping equal ones equal, and every
    date-time it stamped with 'now' (ContributionDateTime) set to ``date_time``."""
    mapping: dict[str, str] = {}

    def visit(ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "DT" and elem.value:
                elem.value = date_time
            elif (
                elem.VR == "UI" and isinstance(elem.value, str) and elem.value.startswith(_HIGHDICOM_UID_ROOT)
            ):
                old = elem.value
                if old not in mapping:
                    mapping[old] = derive_uid(seed, key, "seg-uid", len(mapping))
                elem.value = mapping[old]

    visit(seg)

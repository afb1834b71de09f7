"""A decoded image/label pair on one physical grid, and where it came from. numpy only."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from hcc_shards.geometry import Geometry


@dataclass(frozen=True)
class Provenance:
    """Identifiers of the DICOM objects a case was built from."""

    patient_id: str
    study_instance_uid: str
    ct_series_instance_uid: str
    ct_acquisition_number: int | None
    """AcquisitionNumber of the CT slices used; None when the series has a single unnumbered acquisition."""
    seg_sop_instance_uid: str
    seg_series_instance_uid: str
    frame_of_reference_uid: str = ""
    ct_series_description: str = ""
    seg_series_description: str = ""
    pairing_method: str = ""
    """How the SEG was paired: referenced_series, referenced_instances, frame_of_reference_geometry."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_case_id(patient_id: str, seg_sop_instance_uid: str) -> str:
    """Stable, readable case id: the patient plus a short hash of the SEG instance."""
    digest = hashlib.sha1(seg_sop_instance_uid.encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in patient_id) or "unknown"
    return f"{safe}_{digest}"


@dataclass(frozen=True, eq=False)
class Case:
    """Image (z, y, x) int16 HU and label (z, y, x) uint8 on the same geometry."""

    image: np.ndarray
    """int16 Hounsfield units, (z, y, x)."""
    label: np.ndarray
    """uint8 label values (hcc_shards.labels), (z, y, x)."""
    geometry: Geometry
    """Grid of both arrays."""
    provenance: Provenance
    warnings: tuple[str, ...] = ()
    """Non-fatal findings (e.g. 'seg_frames_reference_two_acquisitions')."""
    unknown_segments: tuple[str, ...] = ()
    """Segment labels that mapped to no known class (reported, never silently dropped)."""
    source_geometry: Geometry | None = None
    """CT grid before resampling; None while the case is still on its CT grid."""
    qc_flags: tuple[str, ...] = field(default=())
    """Quality findings that are not errors, e.g. 'tumor_gt_1.5x_liver'."""

    def __post_init__(self) -> None:
        if self.image.shape != self.geometry.shape:
            raise ValueError(f"image shape {self.image.shape} != geometry shape {self.geometry.shape}")
        if self.label.shape != self.geometry.shape:
            raise ValueError(f"label shape {self.label.shape} != geometry shape {self.geometry.shape}")
        if self.image.dtype != np.int16:
            raise ValueError(f"image dtype must be int16, got {self.image.dtype}")
        if self.label.dtype != np.uint8:
            raise ValueError(f"label dtype must be uint8, got {self.label.dtype}")

    @property
    def case_id(self) -> str:
        return make_case_id(self.provenance.patient_id, self.provenance.seg_sop_instance_uid)

    def with_arrays(self, image: np.ndarray, label: np.ndarray, geometry: Geometry) -> Case:
        """A copy on a new grid that remembers the first grid as ``source_geometry``."""
        return replace(
            self,
            image=image,
            label=label,
            geometry=geometry,
            source_geometry=self.source_geometry or self.geometry,
        )

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


_COUNT_BLOCK = 1 << 22
"""Label voxels counted per np.bincount call (its int64 temporary is 8 bytes per voxel)."""


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
    source_label_voxels: tuple[int, ...] = ()
    """Voxel count of each label value (index = value) on the CT grid; filled when the case is resampled."""
    dicom_source: dict[str, Any] | None = None
    """The CT instances behind the CT grid (docs/FORMAT.md, ``dicom_source``), for exports that
    reference them (DICOM SEG); None when unknown."""

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

    def label_voxels_on_source(self) -> tuple[int, ...]:
        """Voxel count per label value on the CT grid, whether or not the case was resampled since."""
        if self.source_label_voxels:
            return self.source_label_voxels
        # Not one np.bincount: it widens every voxel to int64 (8x the label's memory) and is slow on
        # uint8. A few labels: one count per value; many: bincount in blocks.
        counts = np.zeros(256, dtype=np.int64)
        flat = self.label.reshape(-1)
        top = int(flat.max()) if flat.size else 0
        for start in range(0, flat.size, _COUNT_BLOCK):
            block = flat[start : start + _COUNT_BLOCK]
            if top < 16:
                for value in range(top + 1):
                    counts[value] += np.count_nonzero(block == value)
            else:
                counts += np.bincount(block, minlength=256)
        return tuple(int(n) for n in counts)

    def with_arrays(self, image: np.ndarray, label: np.ndarray, geometry: Geometry) -> Case:
        """A copy on a new grid that remembers the first grid as ``source_geometry``.

        The CT-grid label counts are kept too: volumes measured as acquired are what the dataset card
        reports, and they cannot be recovered from the resampled labels.
        """
        return replace(
            self,
            image=image,
            label=label,
            geometry=geometry,
            source_geometry=self.source_geometry or self.geometry,
            source_label_voxels=self.label_voxels_on_source(),
        )

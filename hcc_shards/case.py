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


CASE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
"""Characters a case id may hold: ASCII letters, digits, ``-`` and ``_`` (safe on every file system
and object store, and in a URL path)."""
CASE_ID_PREFIX_MAX = 40
"""Characters of the readable PatientID prefix kept at most."""
CASE_ID_HASH_CHARS = 16
"""Hex digits of the identity hash (64 bits): distinct identities collide with odds about 2^-32 in
a collection of 2^16 cases, and a collision is still detected and quarantined by the build."""
CASE_ID_MAX_BYTES = CASE_ID_PREFIX_MAX + 1 + CASE_ID_HASH_CHARS
"""Longest case id (57 bytes, under the 64 of docs/FORMAT.md)."""


def make_case_id(
    patient_id: str,
    seg_sop_instance_uid: str,
    ct_series_instance_uid: str = "",
    ct_acquisition_number: int | None = None,
) -> str:
    """Stable, readable, file-name-safe case id: a PatientID prefix plus a hash of the full identity.

    The prefix keeps the PatientID's characters from :data:`CASE_ID_CHARS` (others become ``_``),
    at most :data:`CASE_ID_PREFIX_MAX` of them; it is only for people to read. The hash covers the
    full PatientID, SEG SOPInstanceUID, CT SeriesInstanceUID and acquisition number, so two inputs
    that differ in any of them (``COL/X`` and ``COL_X``, a copied SEG UID under another patient or
    on another CT series) get different ids whatever their prefixes.
    """
    acq = "" if ct_acquisition_number is None else str(int(ct_acquisition_number))
    identity = "\0".join((patient_id, seg_sop_instance_uid, ct_series_instance_uid, acq))
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:CASE_ID_HASH_CHARS]
    safe = "".join(c if c in CASE_ID_CHARS else "_" for c in patient_id[:CASE_ID_PREFIX_MAX]) or "unknown"
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
        p = self.provenance
        return make_case_id(
            p.patient_id, p.seg_sop_instance_uid, p.ct_series_instance_uid, p.ct_acquisition_number
        )

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

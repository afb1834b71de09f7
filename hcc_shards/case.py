"""A decoded image/label pair on one physical grid, and where it came from. numpy only."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.labels import LABELS


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


def make_image_id(
    patient_id: str, ct_series_instance_uid: str, ct_acquisition_number: int | None, block: str = ""
) -> str:
    """Stable id of one stored CT image: the patient plus a short hash of (series, acquisition, block).

    Every SEG that annotates the same slices of one CT series and acquisition shares it, so the
    image is stored once. ``block`` names the slices when a stack with gaps is cut into blocks.
    """
    key = (
        f"{ct_series_instance_uid}\0{'' if ct_acquisition_number is None else ct_acquisition_number}\0{block}"
    )
    return make_case_id(patient_id, f"image:{key}")


@dataclass(frozen=True)
class Annotation:
    """What one SEG says of itself: its source (hcc_shards.annotation) and the labels it defines."""

    source: str
    """``manual``, ``ai``, ``ai_corrected`` or ``unknown`` (hcc_shards.annotation.annotation_source)."""
    source_reason: str
    """Which clause of the rule decided."""
    annotated_labels: tuple[str, ...]
    """Names of the labels the SEG defines (a segment maps to them), in label order; the others
    are not annotated (unknown, not background)."""
    segment_algorithm_type: str = ""
    """Distinct SegmentAlgorithmType values of the segments, sorted, joined by ','."""
    seg_series_description: str = ""
    seg_manufacturer: str = ""
    content_creator: str = ""
    """ContentCreatorName ('' when absent, or removed by pseudonymization)."""
    analysis_result_id: str = ""
    """IDC analysis_result_id of the SEG series, when the build was given one."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["annotated_labels"] = list(self.annotated_labels)
        return d


ALL_LABELS_ANNOTATION = Annotation(
    source="unknown",
    source_reason="no annotation facts given",
    annotated_labels=tuple(lab.name for lab in LABELS),
)
"""The annotation of a Case made without one (every label annotated, source unknown)."""


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
    annotation: Annotation = ALL_LABELS_ANNOTATION
    """Source and defined labels of the SEG."""
    image_id: str = ""
    """Id of the stored CT image this annotation labels ('' -> from the CT series and acquisition)."""

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

    @property
    def stored_image_id(self) -> str:
        """The image id (``image_id``, or one made from the CT series and acquisition)."""
        p = self.provenance
        return self.image_id or make_image_id(p.patient_id, p.ct_series_instance_uid, p.ct_acquisition_number)

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

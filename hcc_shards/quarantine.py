"""Stable reason codes and the quarantine record. Codes are part of docs/FORMAT.md: never rename one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why an input did not become a case. The value is what the quarantine table stores."""

    NOT_DICOM = "not_dicom"
    UNREADABLE = "unreadable"
    NO_PIXEL_DATA = "no_pixel_data"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    INCONSISTENT_GEOMETRY = "inconsistent_geometry"
    MISSING_SLICE = "missing_slice"
    NON_UNIFORM_SPACING = "non_uniform_spacing"
    DUPLICATE_SLICE = "duplicate_slice"
    GANTRY_TILT = "gantry_tilt"
    INVALID_RESCALE = "invalid_rescale"
    IMAGE_TOO_LARGE = "image_too_large"
    SEG_WITHOUT_CT = "seg_without_ct"
    SEG_REFERENCES_ABSENT_INSTANCES = "seg_references_absent_instances"
    FRAME_OF_REFERENCE_MISMATCH = "frame_of_reference_mismatch"
    EMPTY_SEG = "empty_seg"
    NO_KNOWN_SEGMENT = "no_known_segment"
    UNSUPPORTED_SEG = "unsupported_seg"
    DUPLICATE_SEG = "duplicate_seg"
    UNSUPPORTED_MODALITY = "unsupported_modality"
    DUPLICATE_INSTANCE = "duplicate_instance"
    STORAGE_ERROR = "storage_error"
    MISSING_OBJECTS = "missing_objects"
    """A series an index names (idc://) has no object under its prefix in the bucket."""
    INTERNAL_ERROR = "internal_error"
    CASE_ID_COLLISION = "case_id_collision"
    """Two inputs (or an input and a case already written) map to one case id: never merged."""
    INVALID_PIXEL_SPACING = "invalid_pixel_spacing"
    """PixelSpacing zero or negative (a mirrored or degenerate grid)."""
    NON_FINITE_GEOMETRY = "non_finite_geometry"
    """NaN or infinity in the orientation, pixel spacing or position of any one slice."""
    INVALID_ORIENTATION = "invalid_orientation"
    """ImageOrientationPatient cosines not of unit length or not orthogonal."""
    INCONSISTENT_PIXEL_FORMAT = "inconsistent_pixel_format"
    """BitsAllocated, BitsStored or PixelRepresentation differ within a series."""
    INCONSISTENT_DIMENSIONS = "inconsistent_dimensions"
    """Rows or Columns differ within a series."""
    INCONSISTENT_FRAME_OF_REFERENCE = "inconsistent_frame_of_reference"
    """FrameOfReferenceUID differs within a series."""
    RESCALE_OUT_OF_RANGE = "rescale_out_of_range"
    """The rescale maps the whole stored range outside the HU clip range."""
    FILE_TOO_LARGE = "too_large"
    """A file (or one element of it) is larger than its header's own dimensions allow."""
    RESAMPLED_TOO_LARGE = "resampled_too_large"
    """The grid after resampling holds more than max_voxels voxels."""


@dataclass(frozen=True)
class QuarantineRecord:
    """One input that was set aside, with enough identifiers to find it again."""

    code: str
    """A :class:`Reason` value."""
    message: str
    """Human explanation: what was expected, what was found."""
    stage: str
    """Pipeline stage that decided: index, series, pair, decode, resample, write."""
    url: str = ""
    """File URL, where one file is to blame."""
    patient_id: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""
    details: tuple[tuple[str, str], ...] = field(default=())
    """Extra key/value strings (kept small and sorted)."""

    def __post_init__(self) -> None:
        if self.code not in Reason._value2member_map_:
            raise ValueError(
                f"unknown quarantine code {self.code!r}; expected one of {sorted(Reason._value2member_map_)}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["details"] = dict(self.details)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuarantineRecord:
        data = dict(data)
        data["details"] = tuple(sorted((str(k), str(v)) for k, v in (data.get("details") or {}).items()))
        return cls(**data)

    @property
    def sort_key(self) -> tuple[str, ...]:
        return (self.patient_id, self.series_instance_uid, self.sop_instance_uid, self.url, self.code)

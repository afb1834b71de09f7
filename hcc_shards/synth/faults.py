"""Fault modes of the generator: damage a written cohort in documented, reproducible ways.

Each :class:`Fault` turns one healthy patient of a cohort into a known kind of bad input, by
rewriting, adding or deleting that patient's files after :func:`~hcc_shards.synth.generate_cohort`
wrote them. :data:`FAULTS` says which quarantine reason (docs/FORMAT.md) a correct build records
for it, at which stage, and whether the patient's case survives. Order of operations of
:func:`inject_faults`: choose the patients (:func:`assign_faults`, healthy ones only), then per
patient re-plan it (``plan_patient``, a pure function of the seed), read the files the fault needs,
and write the damaged ones back. The same cohort, assignment and seed give the same bytes.

Planted identifying strings (names, birth dates, addresses, free-text comments) are another
mode: :func:`plant_phi` writes them into every file so that a test can prove none reaches an output.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import MRImageStorage

from hcc_shards.quarantine import Reason
from hcc_shards.storage import filesystem, join
from hcc_shards.synth.bomb import deflate_bomb_bytes
from hcc_shards.synth.cohort import encode_dataset
from hcc_shards.synth.layout import ct_path, seg_path
from hcc_shards.synth.plan import PatientPlan, Quirk, SeriesPlan, plan_patient
from hcc_shards.synth.seg import SEG_SERIES_DESCRIPTION, SEG_SERIES_NUMBER
from hcc_shards.synth.truth import CohortTruth
from hcc_shards.synth.uids import derive_uid

__all__ = [
    "CLASSIC_FAULTS",
    "FAULTS",
    "HOSTILE_FAULTS",
    "PHI_STRINGS",
    "Fault",
    "FaultSpec",
    "InjectedFault",
    "assign_faults",
    "inject_faults",
    "plant_patient_id",
    "plant_phi",
]


class Fault(StrEnum):
    """A kind of bad input. The value names it on the command line and in reports."""

    ZERO_BYTE = "zero_byte"
    """A file of the patient (the scout) becomes 0 bytes."""
    TRUNCATED = "truncated"
    """An annotated CT slice loses the last third of its bytes (inside the pixel data)."""
    NOT_DICOM = "not_dicom"
    """A text file sits among the annotated series' slices."""
    NO_PIXEL_DATA = "no_pixel_data"
    """An annotated CT slice has no PixelData element."""
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    """An annotated CT slice is stored as MPEG-2 (no decoder installed)."""
    MISSING_SLICE = "missing_slice"
    """An annotated slice in the middle of the SEG's range is gone, and so are its SEG frames."""
    DUPLICATE_SLICE = "duplicate_slice"
    """A second instance (new SOPInstanceUID) at the position of an annotated slice."""
    MIXED_ORIENTATION = "mixed_orientation"
    """One annotated slice is rotated by 10 degrees about the patient axis."""
    GANTRY_TILT = "gantry_tilt"
    """Every slice of the annotated series is sheared along P as by a 15 degree gantry tilt."""
    ROWS_COLUMNS_CHANGE = "rows_columns_change"
    """One annotated slice has 8 rows fewer than the others."""
    ABSURD_RESCALE = "absurd_rescale"
    """One annotated slice has RescaleSlope 1e6."""
    SEG_WITHOUT_CT = "seg_without_ct"
    """The annotated CT series is absent from the input."""
    SEG_ABSENT_INSTANCES = "seg_absent_instances"
    """A CT slice that SEG frames reference is absent (the SEG is untouched)."""
    FRAME_OF_REFERENCE_MISMATCH = "frame_of_reference_mismatch"
    """The SEG's FrameOfReferenceUID differs from its CT's."""
    EMPTY_SEG = "empty_seg"
    """Every SEG frame is empty."""
    UNKNOWN_SEGMENTS = "unknown_segments"
    """Every segment is relabelled 'Spleen' (SCT 78961009), which maps to no label."""
    TWO_SEGS = "two_segs"
    """A second SEG (series 301) annotates the same CT series and acquisition."""
    MEMORY_BOMB = "memory_bomb"
    """A scout header declares 65535 x 65535 pixels (its pixel data stays small)."""
    DUPLICATE_INSTANCE = "duplicate_instance"
    """An annotated slice is stored twice, under two names."""
    UNSUPPORTED_MODALITY = "unsupported_modality"
    """An MR image (a converted scout) in its own series."""
    ZERO_PIXEL_SPACING = "zero_pixel_spacing"
    """Every annotated slice has PixelSpacing 0\\0."""
    NEGATIVE_PIXEL_SPACING = "negative_pixel_spacing"
    """Every annotated slice has a negative PixelSpacing (a mirrored grid)."""
    NAN_ORIENTATION = "nan_orientation"
    """Every annotated slice has NaN in ImageOrientationPatient."""
    NAN_ORIENTATION_ONE_SLICE = "nan_orientation_one_slice"
    """One annotated slice has NaN in ImageOrientationPatient."""
    NAN_SPACING_ONE_SLICE = "nan_spacing_one_slice"
    """One annotated slice has NaN in PixelSpacing."""
    MIXED_BITS_ALLOCATED = "mixed_bits_allocated"
    """One annotated slice of the 16-bit series is stored with BitsAllocated 8."""
    MIXED_FRAME_OF_REFERENCE = "mixed_frame_of_reference"
    """One annotated slice has another FrameOfReferenceUID."""
    HUGE_RESCALE_INTERCEPT = "huge_rescale_intercept"
    """Every annotated slice has RescaleIntercept 1e6 (every stored value maps above the HU range)."""
    MARKUP_SEGMENT_LABEL = "markup_segment_label"
    """Every segment is relabelled with HTML markup and an unknown code (reaches the card as a message)."""
    DEFLATE_BOMB = "deflate_bomb"
    """The scout, stored deflated, holds a private element of 256 MiB zero bytes (a file of 0.3 MB)."""
    COARSE_SPACING = "coarse_spacing"
    """Every annotated slice and the SEG have PixelSpacing 400\\400 mm: a few CT voxels, giga-voxels once
    resampled."""


@dataclass(frozen=True)
class FaultSpec:
    """What a correct build makes of one fault."""

    reason: Reason
    """Quarantine code of the one record the fault causes."""
    stage: str
    """Stage that records it: index, series, pair, decode or resample (a build's stage: ``plan``
    does not resample, it counts such a patient's case)."""
    keeps_case: bool
    """Whether the patient's case is still built (and identical to a clean build's)."""
    on_seg: bool
    """The record names the SEG (True) or the damaged file (False)."""


FAULTS: dict[Fault, FaultSpec] = {
    Fault.ZERO_BYTE: FaultSpec(Reason.UNREADABLE, "index", True, False),
    Fault.TRUNCATED: FaultSpec(Reason.UNREADABLE, "decode", False, True),
    Fault.NOT_DICOM: FaultSpec(Reason.NOT_DICOM, "index", True, False),
    Fault.NO_PIXEL_DATA: FaultSpec(Reason.NO_PIXEL_DATA, "decode", False, True),
    Fault.UNSUPPORTED_TRANSFER_SYNTAX: FaultSpec(Reason.UNSUPPORTED_TRANSFER_SYNTAX, "decode", False, True),
    Fault.MISSING_SLICE: FaultSpec(Reason.MISSING_SLICE, "series", False, True),
    Fault.DUPLICATE_SLICE: FaultSpec(Reason.DUPLICATE_SLICE, "series", False, True),
    Fault.MIXED_ORIENTATION: FaultSpec(Reason.INCONSISTENT_GEOMETRY, "series", False, True),
    Fault.GANTRY_TILT: FaultSpec(Reason.GANTRY_TILT, "series", False, True),
    Fault.ROWS_COLUMNS_CHANGE: FaultSpec(Reason.INCONSISTENT_DIMENSIONS, "series", False, True),
    Fault.ABSURD_RESCALE: FaultSpec(Reason.INVALID_RESCALE, "decode", False, True),
    Fault.SEG_WITHOUT_CT: FaultSpec(Reason.SEG_WITHOUT_CT, "pair", False, True),
    Fault.SEG_ABSENT_INSTANCES: FaultSpec(Reason.SEG_REFERENCES_ABSENT_INSTANCES, "pair", False, True),
    Fault.FRAME_OF_REFERENCE_MISMATCH: FaultSpec(Reason.FRAME_OF_REFERENCE_MISMATCH, "pair", False, True),
    Fault.EMPTY_SEG: FaultSpec(Reason.EMPTY_SEG, "decode", False, True),
    Fault.UNKNOWN_SEGMENTS: FaultSpec(Reason.NO_KNOWN_SEGMENT, "pair", False, True),
    Fault.TWO_SEGS: FaultSpec(Reason.DUPLICATE_SEG, "pair", True, True),
    Fault.MEMORY_BOMB: FaultSpec(Reason.IMAGE_TOO_LARGE, "index", True, False),
    Fault.DUPLICATE_INSTANCE: FaultSpec(Reason.DUPLICATE_INSTANCE, "pair", True, False),
    Fault.UNSUPPORTED_MODALITY: FaultSpec(Reason.UNSUPPORTED_MODALITY, "index", True, False),
    Fault.ZERO_PIXEL_SPACING: FaultSpec(Reason.INVALID_PIXEL_SPACING, "series", False, True),
    Fault.NEGATIVE_PIXEL_SPACING: FaultSpec(Reason.INVALID_PIXEL_SPACING, "series", False, True),
    Fault.NAN_ORIENTATION: FaultSpec(Reason.NON_FINITE_GEOMETRY, "series", False, True),
    Fault.NAN_ORIENTATION_ONE_SLICE: FaultSpec(Reason.NON_FINITE_GEOMETRY, "series", False, True),
    Fault.NAN_SPACING_ONE_SLICE: FaultSpec(Reason.NON_FINITE_GEOMETRY, "series", False, True),
    Fault.MIXED_BITS_ALLOCATED: FaultSpec(Reason.INCONSISTENT_PIXEL_FORMAT, "series", False, True),
    Fault.MIXED_FRAME_OF_REFERENCE: FaultSpec(Reason.INCONSISTENT_FRAME_OF_REFERENCE, "series", False, True),
    Fault.HUGE_RESCALE_INTERCEPT: FaultSpec(Reason.RESCALE_OUT_OF_RANGE, "series", False, True),
    Fault.MARKUP_SEGMENT_LABEL: FaultSpec(Reason.NO_KNOWN_SEGMENT, "pair", False, True),
    Fault.DEFLATE_BOMB: FaultSpec(Reason.FILE_TOO_LARGE, "index", True, False),
    Fault.COARSE_SPACING: FaultSpec(Reason.RESAMPLED_TOO_LARGE, "resample", False, True),
}
"""Expected outcome of every fault (docs/RELIABILITY.md lists the same table)."""

HOSTILE_FAULTS: tuple[Fault, ...] = (
    Fault.ZERO_PIXEL_SPACING,
    Fault.NEGATIVE_PIXEL_SPACING,
    Fault.NAN_ORIENTATION,
    Fault.NAN_ORIENTATION_ONE_SLICE,
    Fault.NAN_SPACING_ONE_SLICE,
    Fault.MIXED_BITS_ALLOCATED,
    Fault.MIXED_FRAME_OF_REFERENCE,
    Fault.HUGE_RESCALE_INTERCEPT,
    Fault.MARKUP_SEGMENT_LABEL,
    Fault.DEFLATE_BOMB,
    Fault.COARSE_SPACING,
)
"""Header values made by hand to break the geometry and pixel checks (docs/RELIABILITY.md, 'Hostile
input'); the other faults are the first catalogue, which fits a 24-patient cohort."""
CLASSIC_FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f not in HOSTILE_FAULTS)

MARKUP_LABEL = '<img src=x onerror="alert(1)">|`x`|'
"""Segment label of :data:`Fault.MARKUP_SEGMENT_LABEL`."""

ELIGIBLE_QUIRKS: frozenset[str] = frozenset(
    {Quirk.NONE, Quirk.STACKED_PHASES, Quirk.ROUNDED_POSITIONS, Quirk.TUMOUR_GT_LIVER}
)
"""Quirks of the patients a fault may damage: they have a SEG that references its CT on its grid."""

UNSUPPORTED_SYNTAX_UID = "1.2.840.10008.1.2.4.100"
"""MPEG2 Main Profile / Main Level: no pydicom pixel decoder handles it."""
TILT_DEGREES = 15.0
COARSE_PIXEL_SPACING_MM = 400.0
"""PixelSpacing of :data:`Fault.COARSE_SPACING`: 64 x 64 pixels resampled to 4 mm are 6400 x 6400."""

PHI_STRINGS: dict[str, str] = {
    "PatientName": "QUILLFEATHER^MARGUERITE^ANNE",
    "OtherPatientNames": "BRANDYWINE^MARGOT",
    "PatientBirthDate": "19360229",
    "PatientAddress": "17 Wisteria Lane, Fairview 40213",
    "PatientTelephoneNumbers": "+1-555-0147-333",
    "ReferringPhysicianName": "SNODGRASS^ELWOOD",
    "InstitutionName": "Saint Fiacre Private Clinic",
    "ImageComments": "pt reports dizziness, daughter Rosalind Quillfeather present",
    "StudyComments": "prior surgery at Saint Fiacre 2011, MRN 88-4471-2",
    "AdditionalPatientHistory": "hep C since 1987, lives at Wisteria Lane",
}
"""Identifying strings :func:`plant_phi` writes into every file; none may reach an output."""


@dataclass(frozen=True)
class InjectedFault:
    """One fault as written, and the record a correct build makes of it."""

    fault: str
    """A :class:`Fault` value."""
    patient_id: str
    code: str
    """Expected quarantine code."""
    stage: str
    """Expected stage."""
    path: str
    """Path, relative to the cohort root, of the file the record names (the SEG or the damaged file)."""
    sop_instance_uid: str
    """SOPInstanceUID the record names ('' for files whose header cannot be read)."""
    keeps_case: bool
    """Whether the patient's case is still built."""
    touched: tuple[str, ...]
    """Relative paths written, added or deleted."""


def assign_faults(truth: CohortTruth, faults: Sequence[Fault | str]) -> dict[str, Fault]:
    """PatientID -> fault: the faults in the given order on the first eligible patients.

    Eligible patients have a SEG that references its CT on the CT's grid (:data:`ELIGIBLE_QUIRKS`).
    Raises ValueError when the cohort has too few.
    """
    eligible = [p.patient_id for p in truth.patients if p.quirk in ELIGIBLE_QUIRKS and p.seg_sop_instance_uid]
    wanted = [Fault(f) for f in faults]
    if len(wanted) > len(eligible):
        raise ValueError(
            f"{len(wanted)} faults need as many patients with quirk in {sorted(ELIGIBLE_QUIRKS)}; the cohort "
            f"has {len(eligible)} ({eligible}); generate more patients"
        )
    return dict(zip(eligible, wanted, strict=False))


def inject_faults(
    url: str,
    truth: CohortTruth,
    assignment: Mapping[str, Fault | str],
    storage_options: dict[str, Any] | None = None,
) -> tuple[InjectedFault, ...]:
    """Damage the cohort at ``url`` (written with ``truth``): one fault per assigned patient."""
    out = []
    for patient_id, fault in sorted(assignment.items()):
        p = truth.patient(patient_id)
        if p.quirk not in ELIGIBLE_QUIRKS or not p.seg_sop_instance_uid:
            raise ValueError(f"{patient_id} (quirk {p.quirk}) cannot carry a fault; see assign_faults")
        index = int(patient_id.rsplit("_", 1)[1])
        plan = plan_patient(truth.seed, index, truth.size)
        ctx = _Patient(plan, truth.layout, url, storage_options)
        out.append(_APPLY[Fault(fault)](ctx))
    return tuple(out)


def plant_phi(url: str, storage_options: dict[str, Any] | None = None) -> int:
    """Write :data:`PHI_STRINGS` into every readable DICOM file under ``url``; return how many."""
    fs, root = filesystem(url, storage_options)
    n = 0
    for path in sorted(fs.find(root)):
        try:
            ds = pydicom.dcmread(io.BytesIO(fs.cat_file(path)))
        except Exception:  # not DICOM (or damaged on purpose): nothing to plant into
            continue
        for keyword, value in PHI_STRINGS.items():
            setattr(ds, keyword, value)
        fs.pipe_file(path, encode_dataset(ds))
        n += 1
    return n


def plant_patient_id(
    url: str, truth: CohortTruth, patient_id: str, new_id: str, storage_options: dict[str, Any] | None = None
) -> tuple[str, ...]:
    """Give every file of ``patient_id`` the PatientID ``new_id`` (hostile text, a near-copy of another
    patient's id); UIDs are kept. Returns the relative paths rewritten."""
    index = int(patient_id.rsplit("_", 1)[1])
    p = _Patient(plan_patient(truth.seed, index, truth.size), truth.layout, url, storage_options)
    touched = []
    for series in p.study.series:
        for rel in p.files_of(series):
            ds = p.read(rel)
            ds.PatientID = new_id
            p.write(rel, ds)
            touched.append(rel)
    seg = p.read(p.seg_rel)
    seg.PatientID = new_id
    p.write(p.seg_rel, seg)
    return (*touched, p.seg_rel)


# -- one patient ---------------------------------------------------------------------------


class _Patient:
    """File access for one planned patient of a written cohort."""

    def __init__(self, plan: PatientPlan, layout: str, url: str, storage_options: dict[str, Any] | None):
        if plan.seg is None:
            raise ValueError(f"{plan.patient_id} has no SEG")
        self.plan = plan
        self.seg_plan = plan.seg
        self.layout = layout
        self.fs, self.root = filesystem(url, storage_options)
        self.study = plan.studies[plan.seg.study_index]
        self.series = self.study.series[plan.seg.series_index]
        self.seg_rel = seg_path(layout, plan, self.study, SEG_SERIES_NUMBER, SEG_SERIES_DESCRIPTION)
        self._slices: list[tuple[str, Dataset]] | None = None

    # storage
    def path(self, rel: str) -> str:
        return join(self.root, rel)

    def read(self, rel: str) -> Dataset:
        return pydicom.dcmread(io.BytesIO(self.fs.cat_file(self.path(rel))))

    def write(self, rel: str, ds: Dataset) -> None:
        self.pipe(rel, encode_dataset(ds))

    def pipe(self, rel: str, data: bytes) -> None:
        self.fs.makedirs(self.path(rel).rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(self.path(rel), data)

    def rm(self, rel: str) -> None:
        self.fs.rm_file(self.path(rel))

    def series_dir(self, series: SeriesPlan) -> str:
        return ct_path(self.layout, self.plan, self.study, series, 1, "0").rsplit("/", 1)[0]

    def files_of(self, series: SeriesPlan) -> list[str]:
        base = self.path(self.series_dir(series))
        prefix = self.root.rstrip("/") + "/"
        return sorted(p[len(prefix) :] if p.startswith(prefix) else p for p in self.fs.find(base))

    def uid(self, *parts: object) -> str:
        return derive_uid(self.plan.seed, self.plan.patient_id, "fault", *parts)

    # what faults need
    def annotated(self) -> list[tuple[str, Dataset]]:
        """(relative path, dataset) of the annotated acquisition's slices, ordered along the normal."""
        if self._slices is None:
            acq = self.seg_plan.acquisition_number
            items = [(rel, self.read(rel)) for rel in self.files_of(self.series)]
            items = [(rel, ds) for rel, ds in items if int(ds.AcquisitionNumber) == acq]
            self._slices = sorted(items, key=lambda it: float(it[1].ImagePositionPatient[2]))
        return self._slices

    def referenced_middle(self) -> tuple[str, Dataset]:
        """The annotated slice at the middle of the range the SEG's frames reference."""
        seg = self.read(self.seg_rel)
        refs = {
            str(src.ReferencedSOPInstanceUID)
            for item in seg.PerFrameFunctionalGroupsSequence
            for deriv in item.get("DerivationImageSequence") or []
            for src in deriv.get("SourceImageSequence") or []
        }
        slices = self.annotated()
        hit = [i for i, (_, ds) in enumerate(slices) if str(ds.SOPInstanceUID) in refs]
        if not hit:
            raise ValueError(f"{self.plan.patient_id}: the SEG references no slice of its CT series")
        return slices[hit[len(hit) // 2]]

    def scout(self) -> str:
        scouts = [s for s in self.study.series if s.kind == "localizer"]
        return self.files_of(scouts[0])[0]

    def new_rel(self, number: int, description: str, series_uid: str, sop_uid: str) -> str:
        """Path of a new single-file series, in the cohort's layout."""
        series = replace(self.series, series_uid=series_uid, series_number=number, description=description)
        return ct_path(self.layout, self.plan, self.study, series, 1, sop_uid)

    def done(
        self, fault: Fault, touched: Sequence[str], rel: str | None = None, sop: str = ""
    ) -> InjectedFault:
        """The record of ``fault``: on ``rel`` (and ``sop``) when given, else on the SEG."""
        spec = FAULTS[fault]
        if rel is None:
            rel, sop = self.seg_rel, self.seg_plan.sop_uid
        return InjectedFault(
            fault=fault.value,
            patient_id=self.plan.patient_id,
            code=spec.reason.value,
            stage=spec.stage,
            path=rel,
            sop_instance_uid=sop,
            keeps_case=spec.keeps_case,
            touched=tuple(touched),
        )


# -- the faults ----------------------------------------------------------------------------


def _zero_byte(p: _Patient) -> InjectedFault:
    rel = p.scout()
    p.pipe(rel, b"")
    return p.done(Fault.ZERO_BYTE, [rel], rel)


def _truncated(p: _Patient) -> InjectedFault:
    rel, _ = p.referenced_middle()
    data = p.fs.cat_file(p.path(rel))
    p.pipe(rel, data[: len(data) - len(data) // 3])
    return p.done(Fault.TRUNCATED, [rel])


def _not_dicom(p: _Patient) -> InjectedFault:
    rel = f"{p.series_dir(p.series)}/NOTES.TXT"
    p.pipe(rel, b"Contrast given at 14:02, 100 ml. Technologist notes; not an image.\n")
    return p.done(Fault.NOT_DICOM, [rel], rel)


def _no_pixel_data(p: _Patient) -> InjectedFault:
    rel, ds = p.referenced_middle()
    del ds.PixelData
    p.write(rel, ds)
    return p.done(Fault.NO_PIXEL_DATA, [rel])


def _unsupported_transfer_syntax(p: _Patient) -> InjectedFault:
    rel, ds = p.referenced_middle()
    ds.file_meta.TransferSyntaxUID = UNSUPPORTED_SYNTAX_UID
    ds.PixelData = encapsulate([bytes(ds.PixelData)])
    ds["PixelData"].VR = "OB"
    p.write(rel, ds)
    return p.done(Fault.UNSUPPORTED_TRANSFER_SYNTAX, [rel])


def _missing_slice(p: _Patient) -> InjectedFault:
    rel, ds = p.referenced_middle()
    gone = str(ds.SOPInstanceUID)
    p.rm(rel)
    seg = p.read(p.seg_rel)
    _drop_seg_frames(seg, gone)
    p.write(p.seg_rel, seg)
    return p.done(Fault.MISSING_SLICE, [rel, p.seg_rel])


def _duplicate_slice(p: _Patient) -> InjectedFault:
    rel, ds = p.referenced_middle()
    uid = p.uid("duplicate_slice")
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.InstanceNumber = 9999
    new = f"{rel.rsplit('/', 1)[0]}/dup-{rel.rsplit('/', 1)[1]}"
    p.write(new, ds)
    return p.done(Fault.DUPLICATE_SLICE, [new])


def _mixed_orientation(p: _Patient) -> InjectedFault:
    rel, ds = p.referenced_middle()
    a = math.radians(10.0)
    ds.ImageOrientationPatient = [
        f"{math.cos(a):.6f}",
        f"{math.sin(a):.6f}",
        "0",
        f"{-math.sin(a):.6f}",
        f"{math.cos(a):.6f}",
        "0",
    ]
    p.write(rel, ds)
    return p.done(Fault.MIXED_ORIENTATION, [rel])


def _gantry_tilt(p: _Patient) -> InjectedFault:
    touched = []
    shear = math.tan(math.radians(TILT_DEGREES))
    rels = p.files_of(p.series)
    z0 = min(float(p.read(rel).ImagePositionPatient[2]) for rel in rels)
    for rel in rels:
        ds = p.read(rel)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:.4f}", f"{y + (z - z0) * shear:.4f}", f"{z:.4f}"]
        ds.GantryDetectorTilt = f"{TILT_DEGREES:g}"
        p.write(rel, ds)
        touched.append(rel)
    return p.done(Fault.GANTRY_TILT, touched)


def _rows_columns_change(p: _Patient) -> InjectedFault:
    rel, ds = p.referenced_middle()
    pixels = np.frombuffer(ds.PixelData, dtype="<u2").reshape(int(ds.Rows), int(ds.Columns))
    ds.Rows = int(ds.Rows) - 8
    ds.PixelData = np.ascontiguousarray(pixels[: int(ds.Rows)]).tobytes()
    p.write(rel, ds)
    return p.done(Fault.ROWS_COLUMNS_CHANGE, [rel])


def _absurd_rescale(p: _Patient) -> InjectedFault:
    rel, ds = p.referenced_middle()
    ds.RescaleSlope = "1000000"
    p.write(rel, ds)
    return p.done(Fault.ABSURD_RESCALE, [rel])


def _seg_without_ct(p: _Patient) -> InjectedFault:
    rels = p.files_of(p.series)
    for rel in rels:
        p.rm(rel)
    return p.done(Fault.SEG_WITHOUT_CT, rels)


def _seg_absent_instances(p: _Patient) -> InjectedFault:
    rel, _ = p.referenced_middle()
    p.rm(rel)
    return p.done(Fault.SEG_ABSENT_INSTANCES, [rel])


def _frame_of_reference_mismatch(p: _Patient) -> InjectedFault:
    seg = p.read(p.seg_rel)
    seg.FrameOfReferenceUID = p.uid("frame_of_reference")
    p.write(p.seg_rel, seg)
    return p.done(Fault.FRAME_OF_REFERENCE_MISMATCH, [p.seg_rel])


def _empty_seg(p: _Patient) -> InjectedFault:
    seg = p.read(p.seg_rel)
    seg.PixelData = bytes(len(seg.PixelData))
    p.write(p.seg_rel, seg)
    return p.done(Fault.EMPTY_SEG, [p.seg_rel])


def _unknown_segments(p: _Patient) -> InjectedFault:
    seg = p.read(p.seg_rel)
    for item in seg.SegmentSequence:
        item.SegmentLabel = "Spleen"
        code = item.SegmentedPropertyTypeCodeSequence[0]
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "78961009", "SCT", "Spleen"
    p.write(p.seg_rel, seg)
    return p.done(Fault.UNKNOWN_SEGMENTS, [p.seg_rel])


def _two_segs(p: _Patient) -> InjectedFault:
    # A true duplicate: the same SEG instance (one SOPInstanceUID) in a second file. A second SEG
    # with its own SOPInstanceUID is another annotation and becomes its own case.
    seg = p.read(p.seg_rel)
    sop = str(seg.SOPInstanceUID)
    rel = p.new_rel(SEG_SERIES_NUMBER + 1, "Segmentation 2", p.uid("second_seg_folder"), sop)
    p.write(rel, seg)
    # The first file by URL is kept; the record names the other one.
    return p.done(Fault.TWO_SEGS, [rel], max(rel, p.seg_rel), sop)


def _memory_bomb(p: _Patient) -> InjectedFault:
    rel = p.scout()
    ds = p.read(rel)
    ds.Rows = 65535
    ds.Columns = 65535
    p.write(rel, ds)
    return p.done(Fault.MEMORY_BOMB, [rel], rel, str(ds.SOPInstanceUID))


def _duplicate_instance(p: _Patient) -> InjectedFault:
    rel, _ = p.referenced_middle()
    data = p.fs.cat_file(p.path(rel))
    new = f"{rel.rsplit('/', 1)[0]}/zz-copy-{rel.rsplit('/', 1)[1]}"
    p.pipe(new, data)
    sop = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
    return p.done(Fault.DUPLICATE_INSTANCE, [new], new, sop)


def _unsupported_modality(p: _Patient) -> InjectedFault:
    ds = p.read(p.scout())
    sop, series = p.uid("mr"), p.uid("mr_series")
    ds.SOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = 901
    ds.Modality = "MR"
    rel = p.new_rel(901, "MR converted scout", series, sop)
    p.write(rel, ds)
    return p.done(Fault.UNSUPPORTED_MODALITY, [rel], rel, sop)


def _every_annotated(p: _Patient, fault: Fault, change: Any) -> InjectedFault:
    touched = []
    for rel, ds in p.annotated():
        change(ds)
        p.write(rel, ds)
        touched.append(rel)
    return p.done(fault, touched)


def _one_annotated(p: _Patient, fault: Fault, change: Any) -> InjectedFault:
    rel, ds = p.referenced_middle()
    change(ds)
    p.write(rel, ds)
    return p.done(fault, [rel])


def _zero_pixel_spacing(p: _Patient) -> InjectedFault:
    return _every_annotated(p, Fault.ZERO_PIXEL_SPACING, lambda ds: setattr(ds, "PixelSpacing", ["0", "0"]))


def _negative_pixel_spacing(p: _Patient) -> InjectedFault:
    def change(ds: Dataset) -> None:
        ds.PixelSpacing = [f"{-float(v):g}" for v in ds.PixelSpacing]

    return _every_annotated(p, Fault.NEGATIVE_PIXEL_SPACING, change)


def _nan_orientation(ds: Dataset) -> None:
    ds.ImageOrientationPatient = ["NaN", "0", "0", "0", "1", "0"]


def _nan_orientation_all(p: _Patient) -> InjectedFault:
    return _every_annotated(p, Fault.NAN_ORIENTATION, _nan_orientation)


def _nan_orientation_one(p: _Patient) -> InjectedFault:
    return _one_annotated(p, Fault.NAN_ORIENTATION_ONE_SLICE, _nan_orientation)


def _nan_spacing_one(p: _Patient) -> InjectedFault:
    return _one_annotated(
        p,
        Fault.NAN_SPACING_ONE_SLICE,
        lambda ds: setattr(ds, "PixelSpacing", ["NaN", str(ds.PixelSpacing[1])]),
    )


def _mixed_bits_allocated(p: _Patient) -> InjectedFault:
    def change(ds: Dataset) -> None:
        pixels = np.frombuffer(ds.PixelData, dtype="<u2")
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = (pixels >> 8).astype(np.uint8).tobytes()

    return _one_annotated(p, Fault.MIXED_BITS_ALLOCATED, change)


def _mixed_frame_of_reference(p: _Patient) -> InjectedFault:
    uid = p.uid("slice_frame_of_reference")
    return _one_annotated(
        p, Fault.MIXED_FRAME_OF_REFERENCE, lambda ds: setattr(ds, "FrameOfReferenceUID", uid)
    )


def _huge_rescale_intercept(p: _Patient) -> InjectedFault:
    return _every_annotated(
        p, Fault.HUGE_RESCALE_INTERCEPT, lambda ds: setattr(ds, "RescaleIntercept", "1000000")
    )


def _markup_segment_label(p: _Patient) -> InjectedFault:
    seg = p.read(p.seg_rel)
    for item in seg.SegmentSequence:
        item.SegmentLabel = MARKUP_LABEL
        code = item.SegmentedPropertyTypeCodeSequence[0]
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "78961009", "SCT", MARKUP_LABEL
    p.write(p.seg_rel, seg)
    return p.done(Fault.MARKUP_SEGMENT_LABEL, [p.seg_rel])


def _deflate_bomb(p: _Patient) -> InjectedFault:
    rel = p.scout()
    p.pipe(rel, deflate_bomb_bytes(p.read(rel)))
    # The record cannot name the instance: its header is never read past the limit.
    return p.done(Fault.DEFLATE_BOMB, [rel], rel)


def _coarse_spacing(p: _Patient) -> InjectedFault:
    spacing = [f"{COARSE_PIXEL_SPACING_MM:g}"] * 2
    out = _every_annotated(p, Fault.COARSE_SPACING, lambda ds: setattr(ds, "PixelSpacing", spacing))
    # The SEG keeps to its CT's grid, so that only the resampled size is wrong.
    seg = p.read(p.seg_rel)
    groups = [*(seg.get("SharedFunctionalGroupsSequence") or []), *seg.PerFrameFunctionalGroupsSequence]
    for group in groups:
        for measures in group.get("PixelMeasuresSequence") or []:
            measures.PixelSpacing = spacing
    p.write(p.seg_rel, seg)
    return replace(out, touched=(*out.touched, p.seg_rel))


def _drop_seg_frames(seg: Dataset, sop_uid: str) -> None:
    """Remove the BINARY SEG frames whose source is ``sop_uid`` (pixel data, per-frame items, refs)."""
    items = list(seg.PerFrameFunctionalGroupsSequence)
    keep = [
        i
        for i, item in enumerate(items)
        if all(
            str(src.ReferencedSOPInstanceUID) != sop_uid
            for deriv in item.get("DerivationImageSequence") or []
            for src in deriv.get("SourceImageSequence") or []
        )
    ]
    rows, cols, n = int(seg.Rows), int(seg.Columns), len(items)
    bits = np.unpackbits(np.frombuffer(seg.PixelData, dtype=np.uint8), bitorder="little")
    frames = bits[: n * rows * cols].reshape(n, rows * cols)[keep]
    packed = np.packbits(frames.ravel(), bitorder="little").tobytes()
    seg.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    seg.NumberOfFrames = len(keep)
    seg.PerFrameFunctionalGroupsSequence = [items[i] for i in keep]
    for ref in seg.get("ReferencedSeriesSequence") or []:
        instances = ref.get("ReferencedInstanceSequence") or []
        ref.ReferencedInstanceSequence = [r for r in instances if str(r.ReferencedSOPInstanceUID) != sop_uid]


_APPLY = {
    Fault.ZERO_BYTE: _zero_byte,
    Fault.TRUNCATED: _truncated,
    Fault.NOT_DICOM: _not_dicom,
    Fault.NO_PIXEL_DATA: _no_pixel_data,
    Fault.UNSUPPORTED_TRANSFER_SYNTAX: _unsupported_transfer_syntax,
    Fault.MISSING_SLICE: _missing_slice,
    Fault.DUPLICATE_SLICE: _duplicate_slice,
    Fault.MIXED_ORIENTATION: _mixed_orientation,
    Fault.GANTRY_TILT: _gantry_tilt,
    Fault.ROWS_COLUMNS_CHANGE: _rows_columns_change,
    Fault.ABSURD_RESCALE: _absurd_rescale,
    Fault.SEG_WITHOUT_CT: _seg_without_ct,
    Fault.SEG_ABSENT_INSTANCES: _seg_absent_instances,
    Fault.FRAME_OF_REFERENCE_MISMATCH: _frame_of_reference_mismatch,
    Fault.EMPTY_SEG: _empty_seg,
    Fault.UNKNOWN_SEGMENTS: _unknown_segments,
    Fault.TWO_SEGS: _two_segs,
    Fault.MEMORY_BOMB: _memory_bomb,
    Fault.DUPLICATE_INSTANCE: _duplicate_instance,
    Fault.UNSUPPORTED_MODALITY: _unsupported_modality,
    Fault.ZERO_PIXEL_SPACING: _zero_pixel_spacing,
    Fault.NEGATIVE_PIXEL_SPACING: _negative_pixel_spacing,
    Fault.NAN_ORIENTATION: _nan_orientation_all,
    Fault.NAN_ORIENTATION_ONE_SLICE: _nan_orientation_one,
    Fault.NAN_SPACING_ONE_SLICE: _nan_spacing_one,
    Fault.MIXED_BITS_ALLOCATED: _mixed_bits_allocated,
    Fault.MIXED_FRAME_OF_REFERENCE: _mixed_frame_of_reference,
    Fault.HUGE_RESCALE_INTERCEPT: _huge_rescale_intercept,
    Fault.MARKUP_SEGMENT_LABEL: _markup_segment_label,
    Fault.DEFLATE_BOMB: _deflate_bomb,
    Fault.COARSE_SPACING: _coarse_spacing,
}

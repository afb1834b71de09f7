"""The per-patient random draw: studies, series, geometry, quirk and the SEG, before any pixel exists.

``plan_patient(seed, index, size)`` is a pure function: the same arguments give the same plan,
whatever else is generated, so patients can be generated in any order and in parallel.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.synth.phantom import Anatomy, draw_anatomy
from hcc_shards.synth.uids import derive_int, derive_uid


class Quirk(StrEnum):
    """The real collection's quirks; each synthetic patient carries at most one."""

    NONE = "none"
    STACKED_PHASES = "stacked_phases"
    """One series holds acquisitions 2 and 3 at the same positions; the SEG references one of them."""
    NO_SEG = "no_seg"
    """The patient has no SEG (like HCC_103)."""
    SEG_WITHOUT_REFERENCES = "seg_without_references"
    """The SEG has neither ReferencedSeriesSequence nor per-frame source images (like HCC_048)."""
    SEG_OTHER_GRID = "seg_other_grid"
    """The SEG's in-plane grid differs from its CT's (like HCC_001)."""
    ROUNDED_POSITIONS = "rounded_positions"
    """The annotated series' slice positions differ from a regular grid by rounding only (HCC_021)."""
    TUMOUR_GT_LIVER = "tumour_gt_liver"
    """Tumour volume larger than 1.5x the liver's (HCC_065)."""


SIZES: tuple[str, ...] = ("small", "full")
SMALL_MAX_SLICES = 24
"""Most slices of a series at size 'small' (see :func:`small_slices`)."""
EDITIONS: tuple[str, ...] = ("tcia", "idc")
"""'tcia': the collection as TCIA serves it (one manual SEG per patient); 'idc': as IDC serves it, with
the AIMI SEGs of the analysis result ``bamf_aimi_annotations`` too (hcc_shards.synth.edition)."""

# Patients 1..8 carry these in an order drawn from the seed, so any cohort of 8 or more has every
# quirk once and two patients without any. Later patients: stacked phases at about 20%.
_FIRST_EIGHT: tuple[Quirk, ...] = (
    Quirk.NO_SEG,
    Quirk.SEG_WITHOUT_REFERENCES,
    Quirk.SEG_OTHER_GRID,
    Quirk.ROUNDED_POSITIONS,
    Quirk.TUMOUR_GT_LIVER,
    Quirk.STACKED_PHASES,
    Quirk.NONE,
    Quirk.NONE,
)
STACKED_RATE = 0.21
"""Share of patients after the eighth that carry stacked phases (21 of 105 in the collection)."""

PHASE_ACQUISITION: dict[str, int] = {"pre": 1, "arterial": 2, "portal_venous": 3, "delayed": 4}
"""AcquisitionNumber used for each contrast phase."""

_PRE_DESCRIPTIONS = ("PRE LIVER", "Recon 2: PRE LIVER")
_LIVER_DESCRIPTIONS = ("LIVER 3 PHASE (AP)", "Recon 3: LIVER 3 PHASE (AP)", "3 PHASE LIVER (ABD)")
_CAP_DESCRIPTIONS = (
    "LIVER 3 PHASE (C/A/P)",
    "LIVER 2 PHASE (C/A/P)",
    "LIVER 2PHASE CAP",
    "LIVER  2PHASE WITH CON",
    "C-A-P",
)
_STUDY_DESCRIPTIONS = ("PP CAPLIVER PROTO.", "CT ABDPEL WC", "CT-CAP WWO CON", "CT ABD LIVER 3 PHASE")


@dataclass(frozen=True)
class SeriesPlan:
    """One CT series of a study."""

    series_uid: str
    series_number: int
    description: str
    """SeriesDescription; empty for the DERIVED\\SECONDARY distractor."""
    kind: str
    """'axial' (diagnostic), 'localizer' or 'derived'."""
    acquisitions: tuple[tuple[int, str], ...]
    """(AcquisitionNumber, phase) per acquisition; two entries for stacked phases."""
    geometry: Geometry
    """Voxel grid of every acquisition of the series."""
    time: str
    """SeriesTime / AcquisitionTime of the first acquisition, HHMMSS."""
    signed: bool
    """Signed 16-bit storage with intercept 0, else unsigned 12-bit with intercept -1024."""
    rounded_positions: bool = False
    """Write slice positions with rounding jitter (quirk)."""


@dataclass(frozen=True)
class StudyPlan:
    """One imaging study (pre- or post-TACE)."""

    study_uid: str
    frame_of_reference_uid: str
    date: str
    """StudyDate, YYYYMMDD."""
    time: str
    description: str
    accession: str
    series: tuple[SeriesPlan, ...]


@dataclass(frozen=True)
class SegPlan:
    """The patient's one SEG and what it annotates."""

    study_index: int
    """Index into PatientPlan.studies."""
    series_index: int
    """Index into that study's series: the annotated CT series."""
    acquisition_number: int
    """The annotated acquisition of that series."""
    series_uid: str
    sop_uid: str
    grid: Geometry | None
    """SEG grid when it differs from the CT's (quirk); None means the CT grid."""
    with_references: bool
    """False: no ReferencedSeriesSequence and no per-frame source images (quirk)."""


@dataclass(frozen=True)
class AimiSegPlan:
    """One AIMI-like SEG (IDC edition): liver and tumour of one CT acquisition, predicted or corrected."""

    study_index: int
    series_index: int
    acquisition_number: int
    series_uid: str
    sop_uid: str
    corrected: bool
    """True: a radiologist corrected the prediction (SEMIAUTOMATIC); False: the prediction (AUTOMATIC)."""
    shift_yx: tuple[int, int]
    """In-plane offset, in voxels, of a prediction from the phantom's masks; (0, 0) once corrected."""


@dataclass(frozen=True)
class PatientPlan:
    """Everything drawn for one patient; writing it is deterministic."""

    seed: int
    index: int
    """1-based patient index: PatientID HCC_<index:03d>."""
    size: str
    """'small' or 'full'."""
    quirk: Quirk
    anatomy: Anatomy
    studies: tuple[StudyPlan, ...]
    seg: SegPlan | None
    sex: str
    age: int
    fault: str | None = None
    """Reserved for injected faults (zero-byte, truncated, ...); None writes a valid patient."""
    edition: str = "tcia"
    """One of :data:`EDITIONS`."""
    aimi: tuple[AimiSegPlan, ...] = ()
    """The AIMI-like SEGs (IDC edition only)."""

    @property
    def patient_id(self) -> str:
        return f"HCC_{self.index:03d}"

    @property
    def annotated_series(self) -> SeriesPlan | None:
        if self.seg is None:
            return None
        return self.studies[self.seg.study_index].series[self.seg.series_index]


def quirk_for(seed: int, index: int) -> Quirk:
    """The quirk of patient ``index`` (1-based): a pure function of (seed, index)."""
    if index < 1:
        raise ValueError(f"patient index must be >= 1, got {index}")
    if index <= len(_FIRST_EIGHT):
        order = np.random.default_rng([seed, 0x5E1F]).permutation(len(_FIRST_EIGHT))
        return _FIRST_EIGHT[int(order[index - 1])]
    stacked = derive_int(seed, "stacked", index, modulo=10_000) < STACKED_RATE * 10_000
    return Quirk.STACKED_PHASES if stacked else Quirk.NONE


def plan_patient(seed: int, index: int, size: str) -> PatientPlan:
    """Draw patient ``index`` of the cohort ``seed`` at ``size`` ('small' or 'full')."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    quirk = quirk_for(seed, index)
    rng = np.random.default_rng([seed, index, 0xA11A])
    anatomy = draw_anatomy(rng, index, huge_tumour=quirk is Quirk.TUMOUR_GT_LIVER)
    pid = f"HCC_{index:03d}"
    base = dt.date(1999, 1, 4) + dt.timedelta(days=int(rng.integers(0, 13 * 365)))
    dates = (base, base + dt.timedelta(weeks=int(rng.integers(2, 13))))
    seg_study = 0 if rng.uniform() < 0.8 else 1
    body_fov = 2.0 * anatomy.body.axes_lp[0] + float(rng.uniform(20, 60))
    studies = tuple(
        _plan_study(
            seed,
            rng,
            pid,
            k,
            dates[k],
            anatomy,
            body_fov,
            size,
            stacked=quirk is Quirk.STACKED_PHASES and k == seg_study,
        )
        for k in range(2)
    )
    seg = None
    if quirk is not Quirk.NO_SEG:
        seg = _plan_seg(seed, rng, pid, seg_study, studies[seg_study], quirk)
        if quirk is Quirk.ROUNDED_POSITIONS:
            studies = _with_rounded(studies, seg.study_index, seg.series_index)
    return PatientPlan(
        seed=seed,
        index=index,
        size=size,
        quirk=quirk,
        anatomy=anatomy,
        studies=studies,
        seg=seg,
        sex=str(rng.choice(["M", "M", "M", "F"])),
        age=int(rng.integers(45, 85)),
    )


def _plan_study(
    seed: int,
    rng: np.random.Generator,
    pid: str,
    k: int,
    date: dt.date,
    anatomy: Anatomy,
    body_fov: float,
    size: str,
    *,
    stacked: bool,
) -> StudyPlan:
    study_uid = derive_uid(seed, pid, "study", k)
    hour, minute = int(rng.integers(7, 18)), int(rng.integers(0, 60))
    t0 = dt.datetime.combine(date, dt.time(hour, minute, int(rng.integers(0, 60))))
    # Diagnostic series: PRE, then 1-3 contrast series. A stacked series carries arterial and
    # portal venous together.
    contrast: list[tuple[str, tuple[tuple[int, str], ...]]] = []
    if stacked:
        contrast.append((str(rng.choice(_LIVER_DESCRIPTIONS)), _acqs("arterial", "portal_venous")))
    else:
        contrast.append((str(rng.choice(_LIVER_DESCRIPTIONS)), _acqs("arterial")))
        contrast.append((str(rng.choice(_LIVER_DESCRIPTIONS)), _acqs("portal_venous")))
    n_extra = int(rng.integers(0, 2))
    for _ in range(n_extra):
        if rng.uniform() < 0.5:
            contrast.append((str(rng.choice(_CAP_DESCRIPTIONS)), _acqs("portal_venous")))
        else:
            contrast.append((str(rng.choice(_LIVER_DESCRIPTIONS)), _acqs("delayed")))
    with_derived = k == 1 or rng.uniform() < 0.4
    series: list[SeriesPlan] = []
    minutes = 0

    def add(number: int, description: str, kind: str, acqs, geometry: Geometry) -> None:
        nonlocal minutes
        series.append(
            SeriesPlan(
                series_uid=derive_uid(seed, pid, "study", k, "series", number),
                series_number=number,
                description=description,
                kind=kind,
                acquisitions=acqs,
                geometry=geometry,
                time=(t0 + dt.timedelta(minutes=minutes)).strftime("%H%M%S"),
                signed=bool(rng.uniform() < 0.2),
            )
        )
        minutes += 1 + int(rng.integers(0, 3))

    add(1, "Scout", "localizer", _acqs("pre"), _localizer_geometry(anatomy, body_fov, size))
    used: set[tuple[int, float]] = set()
    add(
        2,
        str(rng.choice(_PRE_DESCRIPTIONS)),
        "axial",
        _acqs("pre"),
        _axial_geometry(rng, anatomy, body_fov, size, "pre", used),
    )
    for n, (desc, acqs) in enumerate(contrast, start=3):
        role = "cap" if desc in _CAP_DESCRIPTIONS else "liver"
        add(n, desc, "axial", acqs, _axial_geometry(rng, anatomy, body_fov, size, role, used))
    if with_derived:
        add(
            100 + int(rng.integers(0, 2)),
            "",
            "derived",
            _acqs("arterial"),
            _derived_geometry(rng, anatomy, body_fov, size),
        )
    return StudyPlan(
        study_uid=study_uid,
        frame_of_reference_uid=derive_uid(seed, pid, "study", k, "for"),
        date=date.strftime("%Y%m%d"),
        time=t0.strftime("%H%M%S"),
        description=str(rng.choice(_STUDY_DESCRIPTIONS)),
        accession=f"{derive_int(seed, pid, k, 'acc', modulo=10**7):07d}",
        series=tuple(series),
    )


def _acqs(*phases: str) -> tuple[tuple[int, str], ...]:
    return tuple((PHASE_ACQUISITION[p], p) for p in phases)


def _in_plane(body_fov: float, size: str, extra_mm: float = 0.0) -> tuple[int, float]:
    # Real scanners pick the field of view for the body; pixel spacing follows from 512 columns.
    fov = float(np.clip(round(body_fov + extra_mm), 298.0, 501.0))
    n = 512 if size == "full" else 64
    return n, fov / n


def _axial_geometry(
    rng: np.random.Generator, anatomy: Anatomy, body_fov: float, size: str, role: str, used: set
) -> Geometry:
    lo, hi = anatomy.s_extent
    dz = float(rng.choice([5.0, 10.0])) if role == "pre" else 2.5 if rng.uniform() < 0.75 else 5.0
    margin_lo, margin_hi = (
        (150.0, 120.0) if role == "cap" else (float(rng.uniform(5, 40)), float(rng.uniform(5, 40)))
    )
    n_full = int(np.clip(round((hi - lo + margin_lo + margin_hi) / dz), 40, 185))
    centre = (lo - margin_lo + hi + margin_hi) / 2.0
    # Distinct series never share a grid, so geometry alone can tell them apart.
    while (n_full, dz) in used:
        n_full = n_full + 1 if n_full < 185 else n_full - 1
    used.add((n_full, dz))
    n, dxy = _in_plane(body_fov, size, float(rng.choice([0.0, 0.0, 20.0, -10.0])))
    nz, dz = (n_full, dz) if size == "full" else small_slices(n_full, dz)
    # Each diagnostic series of a study sits on its own slice lattice (offset by 0.5 mm steps),
    # so a SEG's frame positions identify one series.
    s0 = round(centre - (nz - 1) * dz / 2.0, 2) + 0.5 * (len(used) - 1)
    half = (n - 1) * dxy / 2.0
    return Geometry.from_components(
        shape=(nz, n, n),
        spacing_zyx=(dz, dxy, dxy),
        origin_lps=(round(-half, 4), round(anatomy.body.centre_lp[1] - half, 4), s0),
    )


def small_slices(n_full: int, dz: float) -> tuple[int, float]:
    """(slices, spacing) of a series at size 'small': the z extent of ``n_full`` slices at ``dz``,
    thinned by ``f = ceil(n_full / 24)``: ``ceil(n_full / f)`` slices, ``f * dz`` apart."""
    factor = math.ceil(n_full / SMALL_MAX_SLICES)
    return math.ceil(n_full / factor), dz * factor


def _derived_geometry(rng: np.random.Generator, anatomy: Anatomy, body_fov: float, size: str) -> Geometry:
    n, dxy = _in_plane(body_fov, size)
    nz = 10 if size == "full" else 4
    dz = 5.0 if size == "full" else 12.5
    s_mid = anatomy.liver_centre[2] + float(rng.uniform(-20, 20))
    half = (n - 1) * dxy / 2.0
    return Geometry.from_components(
        shape=(nz, n, n),
        spacing_zyx=(dz, dxy, dxy),
        origin_lps=(
            round(-half, 4),
            round(anatomy.body.centre_lp[1] - half, 4),
            round(s_mid - (nz - 1) * dz / 2.0, 2),
        ),
    )


def _localizer_geometry(anatomy: Anatomy, body_fov: float, size: str) -> Geometry:
    # Coronal: rows run head to foot (-S), columns to the patient's left (+L); one slice at mid P.
    n = 512 if size == "full" else 64
    fov = 500.0
    d = fov / n
    half = (n - 1) * d / 2.0
    s_top = anatomy.liver_centre[2] + 0.6 * fov
    direction = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
    return Geometry.from_components(
        shape=(1, n, n),
        spacing_zyx=(1.0, d, d),
        origin_lps=(round(-half, 4), round(anatomy.body.centre_lp[1], 4), round(s_top, 2)),
        direction=direction,
    )


def _plan_seg(
    seed: int, rng: np.random.Generator, pid: str, k: int, study: StudyPlan, quirk: Quirk
) -> SegPlan:
    candidates = [
        i
        for i, s in enumerate(study.series)
        if s.kind == "axial" and any(p != "pre" for _, p in s.acquisitions)
    ]
    stacked = [i for i in candidates if len(study.series[i].acquisitions) > 1]
    index = stacked[0] if stacked else int(rng.choice(candidates))
    chosen = study.series[index]
    acq = int(rng.choice([a for a, _ in chosen.acquisitions]))
    grid = _other_grid(chosen.geometry) if quirk is Quirk.SEG_OTHER_GRID else None
    return SegPlan(
        study_index=k,
        series_index=index,
        acquisition_number=acq,
        series_uid=derive_uid(seed, pid, "seg-series"),
        sop_uid=derive_uid(seed, pid, "seg-instance"),
        grid=grid,
        with_references=quirk is not Quirk.SEG_WITHOUT_REFERENCES,
    )


def _other_grid(ct: Geometry) -> Geometry:
    # Same slice positions (frames keep a per-frame position on a CT slice), coarser in-plane
    # spacing, a smaller square extent and an origin off the CT's voxel lattice.
    nz, ny, _ = ct.shape
    dz, dy, _ = ct.spacing
    d = round(dy * 1.37, 6)
    n = int(ny * dy * 0.9 / d)
    centre = ct.index_to_world(np.array([[0, (ny - 1) / 2.0, (ny - 1) / 2.0]]))[0]
    origin = np.round(centre - np.array([(n - 1) * d / 2.0 + 0.31 * d, (n - 1) * d / 2.0 - 0.23 * d, 0.0]), 4)
    return Geometry.from_components(
        shape=(nz, n, n), spacing_zyx=(dz, d, d), origin_lps=origin, direction=ct.direction
    )


def _with_rounded(studies: tuple[StudyPlan, ...], k: int, i: int) -> tuple[StudyPlan, ...]:
    study = studies[k]
    series = list(study.series)
    series[i] = replace(series[i], rounded_positions=True)
    return tuple(replace(s, series=tuple(series)) if j == k else s for j, s in enumerate(studies))

"""The IDC edition of the synthetic cohort: HCC-TACE-Seg as the Imaging Data Commons serves it.

``plan_idc_patient(seed, index, size)`` is, like :func:`hcc_shards.synth.plan.plan_patient`, a pure
function. Each patient keeps the TCIA edition's manual SEG and quirk (the same
:func:`~hcc_shards.synth.plan.quirk_for`), and gains up to 6 AIMI-like SEGs (none for about 1
patient in 6, :data:`NO_AI_RATE`), as the IDC analysis result ``bamf_aimi_annotations`` adds them:
liver and tumour only, SeriesNumber 300, written as dcmqi writes them (hcc_shards.synth.dcmqi),
AUTOMATIC ("AIMI liver-tumor AI segmentation") or, for some, corrected by a radiologist
(SEMIAUTOMATIC, "AIMI liver-tumor radiologist 7 corrected segmentation"). A NO_SEG patient has AIMI SEGs but no manual one.

The series structure follows the IDC index (shared/data/idc): two studies, each with 1 to 3 CT
series (3 in about 73 % of studies, 2 in 24 %, 1 in 3 %) and nothing else (no localizer, no derived
series); a few series have no SeriesDescription (SeriesNumber 100). Per study: a PRE series when it
has 2 or more, then the first contrast series (arterial, or stacked arterial + portal venous), then
a further portal venous or C/A/P series.

Slice counts, at ``size='full'``, are drawn in the index's range 18-277: PRE 18-60 slices at 5 or
10 mm, the first contrast series 40-185 (the range of the annotated series; the manual SEG goes on
one such series), the further series 60-277, contrast series at 2.5 mm (75 %) or 5 mm. At
``size='small'`` every series keeps the z extent of its full-size draw with its slices thinned by
``f = ceil(n / 24)`` (``ceil(n / f)`` slices, ``f`` times the spacing), so 18-277 slices become 13-24,
on 64 x 64 pixels as in the TCIA edition.

AIMI SEGs of a study go on distinct CT series (the index never has more AI SEGs in a study than CT
series): in the annotated study the manual SEG's CT series first or last (half the patients each),
so some AI SEGs share the manual SEG's CT and image and others are on other series of the same
study. Usually one fewer AI SEG than CT series (as in 152 of 164 studies of the index). A corrected
SEG goes on the CT series of the study's first AI SEG, in about 12 % of studies with AI SEGs.
Patients 1 to 4 follow fixed profiles (:data:`PROFILES`) so that every cohort of 4 or more patients
has studies with 1, 2 and 3 CT series, series without description, corrected SEGs, AI SEGs on the
manual SEG's CT and on other series, whichever of them carries the NO_SEG quirk.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.synth.phantom import Anatomy, draw_anatomy
from hcc_shards.synth.plan import (
    _CAP_DESCRIPTIONS,
    _LIVER_DESCRIPTIONS,
    _PRE_DESCRIPTIONS,
    _STUDY_DESCRIPTIONS,
    AimiSegPlan,
    PatientPlan,
    Quirk,
    SegPlan,
    SeriesPlan,
    StudyPlan,
    _acqs,
    _in_plane,
    _other_grid,
    _with_rounded,
    quirk_for,
    small_slices,
)
from hcc_shards.synth.uids import derive_int, derive_uid

MAX_AIMI = 6
"""Most AIMI SEGs (predicted and corrected) of one patient, as in the index."""
BLANK_SERIES_NUMBER = 100
"""SeriesNumber of a CT series without SeriesDescription (100, 101, ... in the index)."""
NO_AI_RATE = 17 / 105
"""Share of patients (after patient 4, NO_SEG patients excepted) with no AIMI SEG (17 of 105 in the
index); decided by its own draw, so every other draw of a patient is as without it."""
CORRECTED_RATE = 0.12
"""Share of studies with AI SEGs that also have a corrected one (25 of 164 in the index)."""
BLANK_RATE = 0.03
"""Share of studies (after patient 4) with a CT series without SeriesDescription."""
_CT_SERIES_P = (0.03, 0.24, 0.73)
"""Probability of 1, 2 and 3 CT series in a study (5, 51 and 155 of 211 in the index)."""


@dataclass(frozen=True)
class Profile:
    """What a patient's studies hold; pairs are (annotated study, other study)."""

    cts: tuple[int, int]
    """CT series per study, 1 to 3."""
    ai: tuple[int, int]
    """AUTOMATIC AIMI SEGs per study, at most that study's CT series."""
    on_manual: bool
    """In the annotated study, the AI SEGs start on the manual SEG's CT series (else they end there)."""
    corrected: tuple[bool, bool]
    """A radiologist-corrected SEG in the study (needs an AI SEG there)."""
    blank: tuple[int | None, int | None]
    """Index of the study's series without SeriesDescription, or None."""


PROFILES: tuple[Profile, ...] = (
    Profile(cts=(3, 3), ai=(2, 2), on_manual=True, corrected=(True, False), blank=(None, None)),
    Profile(cts=(2, 3), ai=(1, 2), on_manual=False, corrected=(False, False), blank=(None, 2)),
    Profile(cts=(3, 1), ai=(3, 1), on_manual=True, corrected=(False, True), blank=(None, None)),
    Profile(cts=(3, 2), ai=(2, 1), on_manual=True, corrected=(False, False), blank=(2, None)),
)
"""Profiles of patients 1 to 4 (see the module docstring); later patients draw theirs."""


def draw_profile(rng: np.random.Generator, index: int) -> Profile:
    """Patient ``index``'s profile: fixed for 1 to 4, drawn from the index's frequencies after."""
    if index <= len(PROFILES):
        return PROFILES[index - 1]
    cts = tuple(int(rng.choice([1, 2, 3], p=_CT_SERIES_P)) for _ in range(2))
    ai = []
    for n in cts:
        u = float(rng.uniform())
        ai.append(0 if u < 0.1 else n if u < 0.2 else max(1, n - 1))
    if sum(ai) == 0:
        ai[0] = 1
    corrected = [a > 0 and float(rng.uniform()) < CORRECTED_RATE for a in ai]
    for k in (1, 0):  # never more than MAX_AIMI in all
        if sum(ai) + sum(corrected) > MAX_AIMI:
            corrected[k] = False
    blank = tuple(n - 1 if n >= 2 and float(rng.uniform()) < BLANK_RATE else None for n in cts)
    return Profile(
        cts=(cts[0], cts[1]),
        ai=(ai[0], ai[1]),
        on_manual=bool(rng.uniform() < 0.5),
        corrected=(corrected[0], corrected[1]),
        blank=(blank[0], blank[1]),
    )


def without_ai(seed: int, index: int) -> bool:
    """Whether patient ``index`` past the fixed profiles has no AIMI SEG (:data:`NO_AI_RATE`)."""
    return bool(np.random.default_rng([seed, index, 0xA1]).uniform() < NO_AI_RATE)


def plan_idc_patient(seed: int, index: int, size: str) -> PatientPlan:
    """Draw patient ``index`` of the IDC edition of cohort ``seed`` at ``size``."""
    quirk = quirk_for(seed, index)
    rng = np.random.default_rng([seed, index, 0x1DC0])
    anatomy = draw_anatomy(rng, index, huge_tumour=quirk is Quirk.TUMOUR_GT_LIVER)
    pid = f"HCC_{index:03d}"
    base = dt.date(1999, 1, 4) + dt.timedelta(days=int(rng.integers(0, 13 * 365)))
    dates = (base, base + dt.timedelta(weeks=int(rng.integers(2, 13))))
    annotated = 0 if rng.uniform() < 0.8 else 1
    body_fov = 2.0 * anatomy.body.axes_lp[0] + float(rng.uniform(20, 60))
    profile = draw_profile(rng, index)
    if index > len(PROFILES) and quirk is not Quirk.NO_SEG and without_ai(seed, index):
        profile = replace(profile, ai=(0, 0), corrected=(False, False))
    # Profile pairs are (annotated, other); studies are in date order.
    order = (annotated, 1 - annotated)
    per_study = {k: j for j, k in enumerate(order)}
    planned = [
        _plan_study(
            seed,
            rng,
            pid,
            k,
            dates[k],
            anatomy,
            body_fov,
            size,
            n_ct=profile.cts[per_study[k]],
            blank=profile.blank[per_study[k]],
            stacked=quirk is Quirk.STACKED_PHASES and k == annotated,
        )
        for k in range(2)
    ]
    studies = tuple(study for study, _ in planned)
    manual = _plan_manual(seed, rng, pid, annotated, studies[annotated], planned[annotated][1], quirk)
    if quirk is Quirk.ROUNDED_POSITIONS:
        studies = _with_rounded(studies, manual.study_index, manual.series_index)
    aimi = _plan_aimi(seed, rng, pid, studies, manual, profile, order)
    return PatientPlan(
        seed=seed,
        index=index,
        size=size,
        quirk=quirk,
        anatomy=anatomy,
        studies=studies,
        seg=None if quirk is Quirk.NO_SEG else manual,
        sex=str(rng.choice(["M", "M", "M", "F"])),
        age=int(rng.integers(45, 85)),
        edition="idc",
        aimi=aimi,
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
    n_ct: int,
    blank: int | None,
    stacked: bool,
) -> tuple[StudyPlan, tuple[str, ...]]:
    """The study and the role of each of its series ('pre', 'liver', 'late' or 'cap')."""
    hour, minute = int(rng.integers(7, 18)), int(rng.integers(0, 60))
    t0 = dt.datetime.combine(date, dt.time(hour, minute, int(rng.integers(0, 60))))
    first = (
        _acqs("arterial", "portal_venous") if stacked else _acqs("arterial" if n_ct == 3 else "portal_venous")
    )
    # (description, acquisitions, role): role picks the slice-count range and spacing.
    wanted: list[tuple[str, tuple[tuple[int, str], ...], str]] = []
    if n_ct >= 2:
        wanted.append((str(rng.choice(_PRE_DESCRIPTIONS)), _acqs("pre"), "pre"))
    wanted.append((str(rng.choice(_LIVER_DESCRIPTIONS)), first, "liver"))
    if n_ct == 3:
        if stacked or rng.uniform() < 0.5:
            wanted.append((str(rng.choice(_CAP_DESCRIPTIONS)), _acqs("portal_venous"), "cap"))
        else:
            wanted.append((str(rng.choice(_LIVER_DESCRIPTIONS)), _acqs("portal_venous"), "late"))
    series: list[SeriesPlan] = []
    used: set[tuple[int, float]] = set()
    minutes = 0
    for i, (description, acqs, role) in enumerate(wanted):
        number = BLANK_SERIES_NUMBER if i == blank else i + 2
        series.append(
            SeriesPlan(
                series_uid=derive_uid(seed, pid, "study", k, "series", number),
                series_number=number,
                description="" if i == blank else description,
                kind="axial",
                acquisitions=acqs,
                geometry=_geometry(rng, anatomy, body_fov, size, role, used),
                time=(t0 + dt.timedelta(minutes=minutes)).strftime("%H%M%S"),
                signed=bool(rng.uniform() < 0.2),
            )
        )
        minutes += 1 + int(rng.integers(0, 3))
    study = StudyPlan(
        study_uid=derive_uid(seed, pid, "study", k),
        frame_of_reference_uid=derive_uid(seed, pid, "study", k, "for"),
        date=date.strftime("%Y%m%d"),
        time=t0.strftime("%H%M%S"),
        description=str(rng.choice(_STUDY_DESCRIPTIONS)),
        accession=f"{derive_int(seed, pid, k, 'acc', modulo=10**7):07d}",
        series=tuple(series),
    )
    return study, tuple(role for _, _, role in wanted)


_SLICES: dict[str, tuple[int, int]] = {
    "pre": (18, 60),
    "liver": (40, 185),
    "late": (40, 185),
    "cap": (60, 277),
}
"""Full-size slice-count range per series role."""
_ANNOTATED_ROLES = ("liver", "late")
"""Roles of the series a manual SEG may annotate (contrast, 40-185 slices)."""


def full_slices(rng: np.random.Generator, role: str) -> tuple[int, float]:
    """(slices, spacing mm) of a series at full size."""
    lo, hi = _SLICES[role]
    if role == "pre":
        return int(rng.integers(lo, hi + 1)), float(rng.choice([5.0, 10.0]))
    # Log-uniform: short series are as common as in the index (median 87 slices).
    n = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return n, 2.5 if rng.uniform() < 0.75 else 5.0


def _geometry(
    rng: np.random.Generator, anatomy: Anatomy, body_fov: float, size: str, role: str, used: set
) -> Geometry:
    n_full, dz = full_slices(rng, role)
    hi = _SLICES[role][1]
    # Distinct series never share a grid, so geometry alone can tell them apart.
    while (n_full, dz) in used:
        n_full = n_full + 1 if n_full < hi else n_full - 1
    used.add((n_full, dz))
    nz, dz = (n_full, dz) if size == "full" else small_slices(n_full, dz)
    n, dxy = _in_plane(body_fov, size, float(rng.choice([0.0, 0.0, 20.0, -10.0])))
    # Centred near the first mass, so every series, however short, crosses liver and tumour;
    # each series of a study on its own slice lattice (0.5 mm steps).
    centre = anatomy.tumours[0].centre[2] + float(rng.uniform(-10.0, 10.0))
    s0 = round(centre - (nz - 1) * dz / 2.0, 2) + 0.5 * (len(used) - 1)
    half = (n - 1) * dxy / 2.0
    return Geometry.from_components(
        shape=(nz, n, n),
        spacing_zyx=(dz, dxy, dxy),
        origin_lps=(round(-half, 4), round(anatomy.body.centre_lp[1] - half, 4), s0),
    )


def _plan_manual(
    seed: int,
    rng: np.random.Generator,
    pid: str,
    k: int,
    study: StudyPlan,
    roles: tuple[str, ...],
    quirk: Quirk,
) -> SegPlan:
    # The manual SEG annotates a contrast series of 40-185 slices (full size), as in the collection.
    candidates = [i for i, role in enumerate(roles) if role in _ANNOTATED_ROLES]
    stacked = [i for i in candidates if len(study.series[i].acquisitions) > 1]
    index = stacked[0] if stacked else int(rng.choice(candidates))
    chosen = study.series[index]
    return SegPlan(
        study_index=k,
        series_index=index,
        acquisition_number=int(rng.choice([a for a, _ in chosen.acquisitions])),
        series_uid=derive_uid(seed, pid, "seg-series"),
        sop_uid=derive_uid(seed, pid, "seg-instance"),
        grid=_other_grid(chosen.geometry) if quirk is Quirk.SEG_OTHER_GRID else None,
        with_references=quirk is not Quirk.SEG_WITHOUT_REFERENCES,
    )


def _plan_aimi(
    seed: int,
    rng: np.random.Generator,
    pid: str,
    studies: tuple[StudyPlan, ...],
    manual: SegPlan,
    profile: Profile,
    order: tuple[int, int],
) -> tuple[AimiSegPlan, ...]:
    out: list[AimiSegPlan] = []

    def add(k: int, i: int, corrected: bool) -> None:
        series = studies[k].series[i]
        acq = manual.acquisition_number if (k, i) == (manual.study_index, manual.series_index) else None
        n = len(out)
        shift = (0, 0) if corrected else _prediction_shift(rng)
        out.append(
            AimiSegPlan(
                study_index=k,
                series_index=i,
                acquisition_number=series.acquisitions[-1][0] if acq is None else acq,
                series_uid=derive_uid(seed, pid, "aimi", n, "series"),
                sop_uid=derive_uid(seed, pid, "aimi", n, "instance"),
                corrected=corrected,
                shift_yx=shift,
            )
        )

    for j, k in enumerate(order):
        series = list(range(len(studies[k].series)))
        rng.shuffle(series)
        if k == manual.study_index:
            # The manual SEG's CT first (the AI SEGs include it) or last (they avoid it when they can).
            def rank(i: int) -> int:
                first = i == manual.series_index
                return 0 if first == profile.on_manual else 1

            series.sort(key=rank)
        chosen = series[: profile.ai[j]]
        for i in chosen:
            add(k, i, corrected=False)
        if profile.corrected[j] and chosen:
            add(k, chosen[0], corrected=True)
    return tuple(out)


def _prediction_shift(rng: np.random.Generator) -> tuple[int, int]:
    # A prediction is close to, not equal to, the manual masks: one voxel off in-plane.
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    dy, dx = offsets[int(rng.integers(0, len(offsets)))]
    return dy, dx

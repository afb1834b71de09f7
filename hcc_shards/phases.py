"""Contrast phase of each CT acquisition of one study: pre-contrast, arterial, portal venous, delayed.

Pure functions over a few numbers per acquisition (:class:`PhaseEvidence`); no DICOM, array or engine
import, so the rule can be tested alone and read in one place (docs/PHASES.md).

Order of operations of :func:`assign_phases`:

1. Per acquisition, a score per phase from each kind of evidence that is present:
   the mean HU inside the annotation's aorta and portal vein (the strongest: it measures what the
   phase is), SeriesDescription keywords, and the time since ContrastBolusStartTime.
2. Across the acquisitions of the study, ordered by AcquisitionTime (then SeriesNumber and
   AcquisitionNumber, so stacked phases keep their scanner order), the assignment of highest total
   score whose phases never go back in time (pre before arterial before portal venous before
   delayed); two acquisitions may share a phase (a second portal venous series).
3. Per acquisition, a confidence in [0, 1]: the softmax share of the chosen phase among its own
   scores, with the time-order term included.

A phase with no evidence at all is ``unknown`` with confidence 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

PRE = "pre"
ARTERIAL = "arterial"
PORTAL_VENOUS = "portal_venous"
DELAYED = "delayed"
UNKNOWN = "unknown"

PHASES: tuple[str, ...] = (PRE, ARTERIAL, PORTAL_VENOUS, DELAYED)
"""Contrast phases, in the order they are acquired."""

HU_PROTOTYPES: dict[str, tuple[float, float]] = {
    PRE: (45.0, 45.0),
    ARTERIAL: (300.0, 110.0),
    PORTAL_VENOUS: (165.0, 170.0),
    DELAYED: (115.0, 115.0),
}
"""Typical mean HU (aorta, portal vein) of each phase in a liver CT (arterial: the aorta far brighter
than the portal vein; portal venous: both bright, portal vein at least the aorta's level; delayed:
both moderate; pre: both near blood's native 40-50 HU)."""
HU_SCALE = 35.0
"""HU distance that costs one unit of score (mean HU in a vessel varies by this much across patients)."""
HU_WEIGHT = 1.0
DESCRIPTION_WEIGHT = 2.5
"""A keyword outweighs a mildly ambiguous HU measurement, not a clear one."""
BOLUS_WEIGHT = 2.0
ORDER_WEIGHT = 1.5
"""Score taken from an assignment for each step back in time (applied by the ordering, see step 2)."""

_DESCRIPTION_KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"\b(PRE|NON[- ]?CON(TRAST)?|W/?O|WITHOUT|UNENHANCED|NATIVE|NC)\b", PRE),
    (r"\b(ART(ERIAL)?|LATE ART|HAP)\b", ARTERIAL),
    (r"\b(PORTAL|PV|PVP|VENOUS|VEN)\b", PORTAL_VENOUS),
    (r"\b(DELAY(ED)?|EQUILIBRIUM|LATE)\b", DELAYED),
)
"""SeriesDescription keyword -> phase. 'AP' is not among them: in this collection it means
abdomen/pelvis ('LIVER 3 PHASE (AP)'), not arterial phase; 'C/A/P' is chest/abdomen/pelvis."""

_BOLUS_SECONDS: tuple[tuple[float, float, str], ...] = (
    (0.0, 50.0, ARTERIAL),
    (50.0, 110.0, PORTAL_VENOUS),
    (110.0, 24 * 3600.0, DELAYED),
)
"""Seconds from ContrastBolusStartTime to AcquisitionTime -> phase."""


@dataclass(frozen=True)
class PhaseEvidence:
    """What is known of one acquisition; every field may be missing."""

    key: str
    """Names the acquisition in the result (e.g. ``<SeriesInstanceUID>:<AcquisitionNumber>``)."""
    series_description: str = ""
    series_number: int | None = None
    acquisition_number: int | None = None
    acquisition_time: str = ""
    """AcquisitionTime, HHMMSS[.FFFFFF] ('' when unknown)."""
    contrast_bolus_agent: str = ""
    contrast_bolus_start_time: str = ""
    aorta_hu: float | None = None
    """Mean HU inside the annotation's aorta label on this acquisition; None when not measured."""
    portal_vein_hu: float | None = None
    """Mean HU inside the annotation's portal vein label."""


@dataclass(frozen=True)
class PhaseCall:
    """The phase of one acquisition and why."""

    key: str
    phase: str
    """One of :data:`PHASES`, or ``unknown``."""
    confidence: float
    """In [0, 1]: the share of the chosen phase among the acquisition's phase scores."""
    evidence: tuple[str, ...]
    """Each piece of evidence used, as ``kind:value->phase`` (docs/PHASES.md)."""

    def to_dict(self) -> dict[str, object]:
        return {"phase": self.phase, "confidence": self.confidence, "evidence": list(self.evidence)}


def seconds_of(hhmmss: str) -> float | None:
    """Seconds since midnight of a DICOM TM value; None when it is not one."""
    text = hhmmss.strip().replace(":", "")
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", text)
    if m is None:
        return None
    hours, minutes, seconds = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds + float(m.group(4) or 0.0)


def hu_scores(aorta: float | None, portal: float | None) -> dict[str, float]:
    """Score per phase from the vessel means: minus the distance to the phase's prototype in units
    of :data:`HU_SCALE` (empty when neither vessel was measured)."""
    if aorta is None and portal is None:
        return {}
    out = {}
    for phase, (pa, pp) in HU_PROTOTYPES.items():
        d2 = 0.0
        if aorta is not None:
            d2 += ((aorta - pa) / HU_SCALE) ** 2
        if portal is not None:
            d2 += ((portal - pp) / HU_SCALE) ** 2
        out[phase] = -HU_WEIGHT * math.sqrt(d2)
    return out


def description_phase(description: str) -> str | None:
    """The phase a SeriesDescription names, or None when it names none or several."""
    text = description.upper()
    found = {phase for pattern, phase in _DESCRIPTION_KEYWORDS if re.search(pattern, text)}
    return found.pop() if len(found) == 1 else None


def bolus_phase(evidence: PhaseEvidence) -> tuple[str, float] | None:
    """(phase, seconds after the bolus start) from the contrast tags, or None without both times."""
    start, at = seconds_of(evidence.contrast_bolus_start_time), seconds_of(evidence.acquisition_time)
    if start is None or at is None:
        return None
    delay = (at - start) % (24 * 3600.0)
    for lo, hi, phase in _BOLUS_SECONDS:
        if lo <= delay < hi:
            return phase, delay
    return None


def own_scores(evidence: PhaseEvidence) -> tuple[dict[str, float], list[str]]:
    """Score per phase of one acquisition from its own evidence, and the evidence it used."""
    scores = dict.fromkeys(PHASES, 0.0)
    used: list[str] = []
    hu = hu_scores(evidence.aorta_hu, evidence.portal_vein_hu)
    if hu:
        for phase, s in hu.items():
            scores[phase] += s
        best = max(hu, key=hu.__getitem__)
        used.append(
            f"hu:aorta={_hu_text(evidence.aorta_hu)},portal_vein={_hu_text(evidence.portal_vein_hu)}->{best}"
        )
    named = description_phase(evidence.series_description)
    if named is not None:
        scores[named] += DESCRIPTION_WEIGHT
        used.append(f"series_description:{evidence.series_description.strip()!r}->{named}")
    bolus = bolus_phase(evidence)
    if bolus is not None:
        scores[bolus[0]] += BOLUS_WEIGHT
        used.append(f"contrast_bolus:{evidence.contrast_bolus_agent or 'agent?'}+{bolus[1]:.0f}s->{bolus[0]}")
    elif evidence.contrast_bolus_agent:
        # An agent named without timing: contrast was given, so this is not a pre-contrast scan.
        scores[PRE] -= 1.0
        used.append(f"contrast_bolus_agent:{evidence.contrast_bolus_agent!r}->not_pre")
    return scores, used


def time_order(evidence: Sequence[PhaseEvidence]) -> list[int]:
    """Indices of ``evidence`` in acquisition order: AcquisitionTime, SeriesNumber, AcquisitionNumber
    (unknown values last; the input order breaks remaining ties)."""

    def key(i: int) -> tuple[float, int, int, int]:
        e = evidence[i]
        t = seconds_of(e.acquisition_time)
        return (
            math.inf if t is None else t,
            e.series_number if e.series_number is not None else 1 << 30,
            e.acquisition_number if e.acquisition_number is not None else 1 << 30,
            i,
        )

    return sorted(range(len(evidence)), key=key)


def assign_phases(evidence: Sequence[PhaseEvidence]) -> list[PhaseCall]:
    """The phase of every acquisition of one study (module docstring); one call per input, in order."""
    if not evidence:
        return []
    own = [own_scores(e) for e in evidence]
    order = time_order(evidence)
    timed = any(seconds_of(e.acquisition_time) is not None for e in evidence)
    chosen = _ordered_assignment([own[i][0] for i in order])
    calls: list[PhaseCall | None] = [None] * len(evidence)
    n = len(order)
    for rank, (i, phase_index) in enumerate(zip(order, chosen, strict=True)):
        scores, used = own[i]
        if not used:
            calls[i] = PhaseCall(evidence[i].key, UNKNOWN, 0.0, ("no_evidence",))
            continue
        # The time-order term: how much the neighbours' phases constrain this one.
        lo = chosen[rank - 1] if rank > 0 else 0
        hi = chosen[rank + 1] if rank + 1 < n else len(PHASES) - 1
        adjusted = {
            p: s - ORDER_WEIGHT * (max(0, lo - k) + max(0, k - hi)) for k, (p, s) in enumerate(scores.items())
        }
        phase = PHASES[phase_index]
        if n > 1:
            when = "acquisition_time" if timed else "series_and_acquisition_number"
            used = [*used, f"order:{rank + 1}_of_{n}_by_{when}"]
        calls[i] = PhaseCall(evidence[i].key, phase, round(_share(adjusted, phase), 4), tuple(used))
    return [c for c in calls if c is not None]


def _ordered_assignment(scores: Sequence[dict[str, float]]) -> list[int]:
    """Phase indices, non-decreasing along ``scores`` (acquisition order), of highest total score."""
    k = len(PHASES)
    best = [[-math.inf] * k for _ in scores]
    back = [[0] * k for _ in scores]
    for t, s in enumerate(scores):
        for p in range(k):
            own = s[PHASES[p]]
            if t == 0:
                best[t][p] = own
                continue
            prev = max(range(p + 1), key=lambda q, t=t: (best[t - 1][q], q))
            best[t][p] = best[t - 1][prev] + own
            back[t][p] = prev
    last = max(range(k), key=lambda p: (best[-1][p], -p))
    out = [last]
    for t in range(len(scores) - 1, 0, -1):
        out.append(back[t][out[-1]])
    return out[::-1]


def _share(scores: dict[str, float], phase: str) -> float:
    top = max(scores.values())
    weights = {p: math.exp(s - top) for p, s in scores.items()}
    return weights[phase] / sum(weights.values())


def _hu_text(value: float | None) -> str:
    return "na" if value is None else f"{value:.0f}"


__all__ = [
    "ARTERIAL",
    "DELAYED",
    "PHASES",
    "PORTAL_VENOUS",
    "PRE",
    "UNKNOWN",
    "PhaseCall",
    "PhaseEvidence",
    "assign_phases",
    "description_phase",
    "hu_scores",
    "seconds_of",
]

"""Pairing: every SEG of one patient with the CT image it annotates, one pairing per case id."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from hcc_shards.build import progress
from hcc_shards.build.failures import pseudonymizer, short_traceback
from hcc_shards.build.listing import name_bytes
from hcc_shards.build.plan import BuildPlan
from hcc_shards.case import make_case_id
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import annotation_of, image_id_of, provenance_of
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.pairing import Pairing, pair_patient
from hcc_shards.dicom.phase_sources import phase_sources
from hcc_shards.quarantine import QuarantineRecord, Reason


def pair_one_patient(
    patient_id: str, headers: Iterable[InstanceHeader], plan: BuildPlan
) -> list[Pairing | QuarantineRecord]:
    """Pairings and records of one patient; an unexpected error quarantines that patient's SEGs."""
    headers = sorted(headers, key=lambda h: h.url)
    progress.mark_paired(plan.progress_dir, patient_id)
    try:
        pairings, records = pair_patient(headers, plan.config)
    except Exception as exc:
        return [
            h.quarantine(
                Reason.INTERNAL_ERROR.value,
                f"pairing failed for patient {patient_id!r}: {type(exc).__name__}: {exc}",
                "pair",
                details=(("traceback", short_traceback(exc)),),
            )
            for h in headers
            if h.is_seg
        ]
    pseudo = pseudonymizer(plan.config.pseudonymize_key)
    if pseudo is not None:  # headers carry pseudonyms already; only the URLs remain
        records = [pseudo.scrub_urls(r, [h.url for h in headers]) for r in records]
    selected = selected_by_source(pairings, plan.config)
    if plan.config.phases != "none":
        selected = [with_phase_sources(p, headers, plan.config) for p in selected]
    return [*selected, *records]


def with_phase_sources(pairing: Pairing, headers: list[InstanceHeader], config: BuildConfig) -> Pairing:
    """``pairing`` with the other acquisitions of its study attached (docs/PHASES.md); a failure to
    find them is a warning of the case, never a quarantine (the annotation does not need them)."""
    try:
        sources, notes = phase_sources(pairing, headers, config)
    except Exception as exc:
        return replace(pairing, warnings=(*pairing.warnings, f"phase_sources_failed:{type(exc).__name__}"))
    return replace(pairing, phase_sources=sources, warnings=(*pairing.warnings, *notes))


def selected_by_source(pairings: Iterable[Pairing], config: BuildConfig) -> list[Pairing]:
    """The pairings whose annotation source is among ``config.annotation_sources`` (the others are
    left out of this build, not quarantined: another selection builds them)."""
    wanted = set(config.annotation_sources)
    return [p for p in pairings if annotation_of(p, config).source in wanted]


def image_group_key(pairing: Pairing) -> str:
    """The stored image a pairing labels: pairings with one key are built together (:func:`build_image`)."""
    return image_id_of(pairing)


@dataclass(frozen=True)
class CaseKey:
    """Identity of a case across runs: what resume and the manifest key on (with the config hash)."""

    seg_sop_instance_uid: str
    ct_series_instance_uid: str
    ct_acquisition_number: int | None
    case_id: str
    """``make_case_id(patient_id, SEG, CT series, acquisition)``: the case directory name."""

    def sort_key(self) -> tuple[str, str, str, int]:
        acq = self.ct_acquisition_number
        return (
            self.case_id,
            self.seg_sop_instance_uid,
            self.ct_series_instance_uid,
            -1 if acq is None else acq,
        )


def case_key(pairing: Pairing) -> CaseKey:
    prov = provenance_of(pairing)
    return CaseKey(
        seg_sop_instance_uid=pairing.seg.sop_instance_uid,
        ct_series_instance_uid=pairing.ct_series_instance_uid,
        ct_acquisition_number=pairing.acquisition_number,
        case_id=make_case_id(
            prov.patient_id,
            prov.seg_sop_instance_uid,
            prov.ct_series_instance_uid,
            prov.ct_acquisition_number,
        ),
    )


def case_sort_key(pairing: Pairing) -> tuple[str, str, str, int]:
    return case_key(pairing).sort_key()


def case_id_of(pairing: Pairing) -> str:
    return case_key(pairing).case_id


def unique_case(
    case_id: str, pairings: Iterable[Pairing], plan: BuildPlan | None = None
) -> list[Pairing | QuarantineRecord]:
    """The pairings of one case id: the first by (SEG URL, CT series) is kept, every other one becomes
    a ``case_id_collision`` record (two inputs are never written to, or merged into, one case)."""
    ordered = sorted(pairings, key=lambda p: (name_bytes(p.seg.url), p.ct_series_instance_uid))
    out: list[Pairing | QuarantineRecord] = [ordered[0]]
    for other in ordered[1:]:
        record = other.seg.quarantine(
            Reason.CASE_ID_COLLISION.value,
            f"case id {case_id} is already taken by the SEG at {ordered[0].seg.url!r}; expected one input "
            "per case id (the first by SEG URL is kept, this one is set aside)",
            "pair",
        )
        record = with_key(record, case_key(other))
        pseudo = pseudonymizer(plan.config.pseudonymize_key) if plan is not None else None
        if pseudo is not None:
            record = pseudo.scrub_urls(record, [ordered[0].seg.url])
        out.append(record)
    return out


def pairing_spacing(pairing: Pairing) -> tuple[float, float, float]:
    return tuple(float(v) for v in pairing.geometry.spacing)  # type: ignore[return-value]


def with_key(record: QuarantineRecord, key: CaseKey) -> QuarantineRecord:
    """``record`` with the case's key in its details (a case set aside can be found by its case id)."""
    extra = {
        "case_id": key.case_id,
        "ct_series_instance_uid": key.ct_series_instance_uid,
        "ct_acquisition_number": "" if key.ct_acquisition_number is None else str(key.ct_acquisition_number),
    }
    merged = {**extra, **dict(record.details)}
    return replace(record, details=tuple(sorted(merged.items())))


def first_cases(pairings: Iterable[Pairing], limit: int) -> list[Pairing]:
    """All pairings (``limit`` 0), or the first ``limit`` by case key: what --limit selects."""
    ordered = sorted(pairings, key=case_sort_key)
    return ordered[:limit] if limit else ordered

"""Where each file goes: the TCIA download layout or the flat IDC bucket layout."""

from __future__ import annotations

import hashlib
import uuid

from hcc_shards.synth.plan import PatientPlan, SeriesPlan, StudyPlan

LAYOUTS: tuple[str, ...] = ("tcia", "idc")

# Characters a download client cannot put in a folder name.
_UNSAFE = str.maketrans({"/": "-", "\\": "-", ":": "", "*": "", "?": "", '"': "", "<": "", ">": "", "|": ""})


def _five_digits(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return f"{int.from_bytes(digest[:4], 'big') % 100000:05d}"


def _name(text: str) -> str:
    cleaned = text.translate(_UNSAFE).strip()
    return cleaned or "NA"


def crdc_uuid(uid: str) -> str:
    """A version-4-shaped UUID derived from a DICOM UID, as IDC names its series and instances."""
    return str(uuid.UUID(bytes=hashlib.sha256(uid.encode()).digest()[:16], version=4))


def study_folder(plan: PatientPlan, study: StudyPlan) -> str:
    """``<MM-DD-YYYY>-NA-<study description>-<5 digits>``."""
    date = f"{study.date[4:6]}-{study.date[6:8]}-{study.date[:4]}"
    return f"{date}-NA-{_name(study.description)}-{_five_digits(study.study_uid)}"


def series_folder(number: int, description: str, series_uid: str) -> str:
    """``<series number>.000000-<series description or NA>-<5 digits>``."""
    return f"{number}.000000-{_name(description)}-{_five_digits(series_uid)}"


def ct_path(
    layout: str, plan: PatientPlan, study: StudyPlan, series: SeriesPlan, instance: int, sop_uid: str
) -> str:
    """Relative path of one CT slice."""
    if layout == "tcia":
        folder = series_folder(series.series_number, series.description, series.series_uid)
        return f"{plan.patient_id}/{study_folder(plan, study)}/{folder}/1-{instance:02d}.dcm"
    if layout == "idc":
        return f"{crdc_uuid(series.series_uid)}/{crdc_uuid(sop_uid)}.dcm"
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def seg_path(layout: str, plan: PatientPlan, study: StudyPlan, series_number: int, description: str) -> str:
    """Relative path of the patient's (manual) SEG."""
    if plan.seg is None:
        raise ValueError(f"{plan.patient_id} has no SEG")
    return seg_file_path(
        layout, plan, study, series_number, description, plan.seg.series_uid, plan.seg.sop_uid
    )


def seg_file_path(
    layout: str,
    plan: PatientPlan,
    study: StudyPlan,
    series_number: int,
    description: str,
    series_uid: str,
    sop_uid: str,
) -> str:
    """Relative path of one single-file SEG series of ``study``."""
    if layout == "tcia":
        folder = series_folder(series_number, description, series_uid)
        return f"{plan.patient_id}/{study_folder(plan, study)}/{folder}/1-1.dcm"
    if layout == "idc":
        return f"{crdc_uuid(series_uid)}/{crdc_uuid(sop_uid)}.dcm"
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")

"""Synthetic HCC-TACE-Seg look-alike cohort: phantom CT studies, DICOM-SEGs (one manual SEG per patient;
AIMI-like ones too in the IDC edition), and truth."""

from hcc_shards.synth.cohort import generate_cohort, generate_patient
from hcc_shards.synth.edition import plan_idc_patient
from hcc_shards.synth.plan import EDITIONS, PatientPlan, Quirk, plan_patient, quirk_for
from hcc_shards.synth.truth import CohortTruth, PatientTruth, SegTruth, SeriesTruth, load_truth, write_truth

__all__ = [
    "EDITIONS",
    "CohortTruth",
    "PatientPlan",
    "PatientTruth",
    "Quirk",
    "SegTruth",
    "SeriesTruth",
    "generate_cohort",
    "generate_patient",
    "load_truth",
    "plan_idc_patient",
    "plan_patient",
    "quirk_for",
    "write_truth",
]

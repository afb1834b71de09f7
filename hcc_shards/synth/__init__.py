"""Synthetic HCC-TACE-Seg look-alike cohort: phantom CT studies, one DICOM-SEG per patient, and truth."""

from hcc_shards.synth.cohort import generate_cohort, generate_patient
from hcc_shards.synth.plan import PatientPlan, Quirk, plan_patient, quirk_for
from hcc_shards.synth.truth import CohortTruth, PatientTruth, SeriesTruth, load_truth, write_truth

__all__ = [
    "CohortTruth",
    "PatientPlan",
    "PatientTruth",
    "Quirk",
    "SeriesTruth",
    "generate_cohort",
    "generate_patient",
    "load_truth",
    "plan_patient",
    "quirk_for",
    "write_truth",
]

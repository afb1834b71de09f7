"""The synthetic cohort: every SEG pairs with the truth's CT series and acquisition, voxel counts exact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from dicom_corpus import by_patient

from hcc_shards.build.dryrun import plan_records
from hcc_shards.build.listing import list_input
from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import decode_pairing
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import METHOD_FRAME_OF_REFERENCE, METHOD_REFERENCED_INSTANCES, pair_patient
from hcc_shards.synth import CohortTruth, Quirk, generate_cohort

CONFIG = BuildConfig()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[CohortTruth, dict[str, list[InstanceHeader]], list, Path]:
    root = tmp_path_factory.mktemp("cohort")
    truth = generate_cohort(str(root / "dicom"), patients=8, size="small", seed=1)
    indexed = [index_file(r.url) for r in list_input(str(root / "dicom"))]
    headers = [h for h in indexed if isinstance(h, InstanceHeader)]
    return truth, by_patient(headers), [r for r in indexed if not isinstance(r, InstanceHeader)], root


@pytest.fixture(scope="module")
def results(cohort) -> dict[str, tuple[list[Case], list]]:
    _, patients, *_ = cohort
    out = {}
    for pid, headers in patients.items():
        pairings, records = pair_patient(headers, CONFIG)
        out[pid] = ([decode_pairing(p, CONFIG) for p in pairings], records, pairings)
    return out


def test_every_file_indexes(cohort):
    truth, patients, records, _ = cohort
    assert records == []
    assert sum(len(v) for v in patients.values()) == truth.files


def test_every_seg_pairs_with_the_truth_series_and_acquisition(cohort, results):
    truth, *_ = cohort
    for p in truth.patients:
        cases, records, pairings = results[p.patient_id]
        if not p.expected_case:
            assert cases == [], p.patient_id
            assert [r.code for r in records] == ([p.expected_reason] if p.expected_reason else []), (
                p.patient_id
            )
            continue
        assert records == [], (p.patient_id, records)
        (case,) = cases
        prov = case.provenance
        assert prov.seg_sop_instance_uid == p.seg_sop_instance_uid
        assert prov.ct_series_instance_uid == p.ct_series_instance_uid, p.patient_id
        assert prov.ct_acquisition_number == p.ct_acquisition_number, p.patient_id
        assert case.geometry.is_close(p.ct_geometry, atol_mm=0.05), (
            p.patient_id,
            case.geometry,
            p.ct_geometry,
        )
        if prov.pairing_method != p.expected_pairing:
            # A SEG without series and per-frame references may still list its sources at the top
            # level; then the referenced instances settle the pairing before geometry is needed.
            assert prov.pairing_method == METHOD_REFERENCED_INSTANCES, p.patient_id
            assert p.expected_pairing == METHOD_FRAME_OF_REFERENCE
            assert pairings[0].seg.source_instance_uids


def test_voxel_counts_equal_the_truth_exactly(cohort, results):
    truth, *_ = cohort
    for p in truth.patients:
        if not p.expected_case:
            continue
        (case,) = results[p.patient_id][0]
        counts = np.bincount(case.label.ravel(), minlength=5)
        got = {
            "liver": int(counts[1]),
            "tumor": int(counts[2]),
            "portal_vein": int(counts[3]),
            "aorta": int(counts[4]),
        }
        assert got == p.voxel_counts, p.patient_id
        assert case.qc_flags == p.expected_qc_flags, p.patient_id
        assert case.unknown_segments == ()


def test_patient_without_seg_yields_nothing(cohort, results):
    truth, *_ = cohort
    (p,) = truth.by_quirk(Quirk.NO_SEG)
    cases, records, _ = results[p.patient_id]
    assert cases == [] and records == []


def test_seg_without_any_reference_pairs_by_frame_of_reference_and_geometry(cohort, results):
    """HCC_048: strip every instance reference, the FrameOfReferenceUID plus positions still pair it."""
    truth, patients, *_ = cohort
    (p,) = truth.by_quirk(Quirk.SEG_WITHOUT_REFERENCES)
    stripped = [
        replace(h, source_instance_uids=(), referenced_series=()) if h.is_seg else h
        for h in patients[p.patient_id]
    ]
    seg = next(h for h in stripped if h.is_seg)
    assert seg.referenced_instance_uids == frozenset()
    (pairing,), records = pair_patient(stripped, CONFIG)
    assert records == []
    assert pairing.method == METHOD_FRAME_OF_REFERENCE
    assert (pairing.ct_series_instance_uid, pairing.acquisition_number) == (
        p.ct_series_instance_uid,
        p.ct_acquisition_number,
    )
    (case,) = results[p.patient_id][0]
    np.testing.assert_array_equal(decode_pairing(pairing, CONFIG).label, case.label)


def test_stacked_phases_choose_the_referenced_acquisition(cohort, results):
    truth, *_ = cohort
    for p in truth.by_quirk(Quirk.STACKED_PHASES):
        series = next(s for s in p.series if s.series_instance_uid == p.ct_series_instance_uid)
        assert len(series.acquisition_numbers) > 1
        (case,) = results[p.patient_id][0]
        assert case.provenance.ct_acquisition_number == p.ct_acquisition_number


def test_plan_records_match_the_truth(cohort):
    truth, _, _, root = cohort
    records = list(plan_records(str(root / "dicom"), CONFIG, workers=2))
    cases = {r["patient_id"]: r for r in records if r["kind"] == "case"}
    expected = {p.patient_id: p for p in truth.patients if p.expected_case}
    assert set(cases) == set(expected)
    for pid, rec in cases.items():
        p = expected[pid]
        assert (rec["ct_series_instance_uid"], rec["ct_acquisition_number"]) == (
            p.ct_series_instance_uid,
            p.ct_acquisition_number,
        )
        assert rec["voxels"] == p.voxel_counts
        assert rec["qc_flags"] == list(p.expected_qc_flags)
    assert records[-1] == {
        "kind": "summary",
        "files": truth.files,
        "instances": truth.files,
        "series": sum(len(p.series) for p in truth.patients) + len(expected),
        "segs": len(expected),
        "patients": len(truth.patients),
        "patients_without_seg": len(truth.patients) - len(expected),
        "ct_series": sum(len(p.series) for p in truth.patients),
        "ct_series_unused": sum(len(p.series) for p in truth.patients) - len(expected),
        "cases": len(expected),
        "quarantined": 0,
        "by_reason": {},
    }

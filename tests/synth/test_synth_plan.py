"""The per-patient draw: quirk rates, geometry from the dataset card, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hcc_shards.synth.phantom import VOLUME_RANGES_ML
from hcc_shards.synth.plan import PHASE_ACQUISITION, Quirk, plan_patient, quirk_for

_DESCRIPTIONS = {
    "PRE LIVER",
    "Recon 2: PRE LIVER",
    "LIVER 3 PHASE (AP)",
    "Recon 3: LIVER 3 PHASE (AP)",
    "3 PHASE LIVER (ABD)",
    "LIVER 3 PHASE (C/A/P)",
    "LIVER 2 PHASE (C/A/P)",
    "LIVER 2PHASE CAP",
    "LIVER  2PHASE WITH CON",
    "C-A-P",
}


@pytest.fixture(scope="module")
def full_plans():
    return [plan_patient(3, i, "full") for i in range(1, 31)]


@pytest.mark.parametrize("seed", [0, 1, 2, 17, 12345])
def test_first_eight_patients_carry_every_quirk_and_two_none(seed):
    quirks = Counter(quirk_for(seed, i) for i in range(1, 9))
    assert quirks[Quirk.NONE] == 2
    assert all(quirks[q] == 1 for q in Quirk if q is not Quirk.NONE)


def test_stacked_phases_about_a_fifth_of_a_large_cohort():
    quirks = Counter(quirk_for(5, i) for i in range(1, 1001))
    assert 0.17 < quirks[Quirk.STACKED_PHASES] / 1000 < 0.25
    assert quirks[Quirk.NO_SEG] == 1 and quirks[Quirk.SEG_OTHER_GRID] == 1
    with pytest.raises(ValueError, match="patient index must be >= 1, got 0"):
        quirk_for(5, 0)


def test_plan_is_a_pure_function_of_seed_and_index():
    a, b = plan_patient(9, 4, "small"), plan_patient(9, 4, "small")
    assert a == b
    assert plan_patient(10, 4, "small").studies[0].study_uid != a.studies[0].study_uid
    with pytest.raises(ValueError, match=r"size must be one of \('small', 'full'\), got 'huge'"):
        plan_patient(9, 4, "huge")


def test_full_size_geometry_follows_the_dataset_card(full_plans):
    for plan in full_plans:
        assert plan.patient_id == f"HCC_{plan.index:03d}"
        assert len(plan.studies) == 2
        assert plan.studies[0].date < plan.studies[1].date
        assert len({s.frame_of_reference_uid for s in plan.studies}) == 2
        for study in plan.studies:
            assert 3 <= len(study.series) <= 6
            kinds = Counter(s.kind for s in study.series)
            assert kinds["localizer"] == 1 and kinds["axial"] >= 2
            for s in study.series:
                if s.kind == "derived":
                    assert s.description == ""
                if s.kind != "axial":
                    continue
                assert s.description in _DESCRIPTIONS
                dz, dy, dx = s.geometry.spacing
                assert s.geometry.shape[1:] == (512, 512)
                assert 40 <= s.geometry.shape[0] <= 185
                assert 0.58 <= dy == dx <= 0.98
                phases = {p for _, p in s.acquisitions}
                assert dz in ((5.0, 10.0) if phases == {"pre"} else (2.5, 5.0))
                assert all(a == PHASE_ACQUISITION[p] for a, p in s.acquisitions)
        if plan.seg is not None:
            annotated = plan.annotated_series
            assert annotated.kind == "axial"
            assert any(p != "pre" for _, p in annotated.acquisitions)


def test_small_size_keeps_the_field_of_view(full_plans):
    for full in full_plans[:6]:
        small = plan_patient(full.seed, full.index, "small")
        for fs, ss in zip(full.studies[0].series, small.studies[0].series, strict=True):
            if fs.kind != "axial":
                continue
            assert ss.geometry.shape[1:] == (64, 64) and 12 <= ss.geometry.shape[0] <= 24
            fov_full = np.asarray(fs.geometry.shape) * np.asarray(fs.geometry.spacing)
            fov_small = np.asarray(ss.geometry.shape) * np.asarray(ss.geometry.spacing)
            np.testing.assert_allclose(fov_small[1:], fov_full[1:])
            assert fov_full[0] <= fov_small[0] < fov_full[0] + 8 * fs.geometry.spacing[0]


def test_volume_targets_span_the_card_ranges(full_plans):
    targets = {name: [dict(p.anatomy.targets_ml)[name] for p in full_plans] for name in VOLUME_RANGES_ML}
    assert min(targets["liver"]) < 800 and max(targets["liver"]) > 2400
    assert min(targets["portal_vein"]) < 6 and max(targets["portal_vein"]) > 120
    assert min(targets["aorta"]) < 5 and max(targets["aorta"]) > 90
    tumours = [dict(p.anatomy.targets_ml)["tumour"] for p in full_plans]
    assert min(tumours) < 10 and max(tumours) > 900
    for p in full_plans:
        t = dict(p.anatomy.targets_ml)
        if p.quirk is Quirk.TUMOUR_GT_LIVER:
            assert t["tumour"] > 1.5 * t["liver"]
        else:
            assert t["tumour"] <= 0.45 * t["liver"] + 0.01


def test_liver_is_on_the_patients_right_and_the_aorta_by_the_spine(full_plans):
    for p in full_plans:
        an = p.anatomy
        assert an.liver_centre[0] < 0
        assert an.aorta.centre_lp[1] < an.spine.centre_lp[1]
        assert abs(an.aorta.centre_lp[0]) < 40
        assert 1 <= len(an.tumours) <= 3

"""Phase assignment (hcc_shards.phases): each kind of evidence alone, together, and its limits."""

from __future__ import annotations

import pytest

from hcc_shards.phases import (
    ARTERIAL,
    DELAYED,
    PORTAL_VENOUS,
    PRE,
    UNKNOWN,
    PhaseEvidence,
    assign_phases,
    description_phase,
    seconds_of,
)


def _phases(evidence: list[PhaseEvidence]) -> list[str]:
    return [c.phase for c in assign_phases(evidence)]


def test_vessel_hu_alone_names_each_phase() -> None:
    calls = assign_phases(
        [
            PhaseEvidence("a", aorta_hu=42, portal_vein_hu=40),
            PhaseEvidence("b", aorta_hu=320, portal_vein_hu=100),
            PhaseEvidence("c", aorta_hu=160, portal_vein_hu=180),
            PhaseEvidence("d", aorta_hu=112, portal_vein_hu=118),
        ]
    )
    assert [c.phase for c in calls] == [PRE, ARTERIAL, PORTAL_VENOUS, DELAYED]
    assert all(0.5 < c.confidence <= 1.0 for c in calls)
    assert calls[1].evidence[0].startswith("hu:aorta=320,portal_vein=100->arterial")


def test_description_keywords_and_the_collections_ambiguous_ones() -> None:
    assert description_phase("PRE LIVER") == PRE
    assert description_phase("Recon 2: PRE LIVER") == PRE
    assert description_phase("ARTERIAL") == ARTERIAL
    assert description_phase("VENOUS") == PORTAL_VENOUS
    assert description_phase("DELAYED 3 MIN") == DELAYED
    # 'AP' is abdomen/pelvis and C/A/P chest/abdomen/pelvis here: no phase.
    assert description_phase("LIVER 3 PHASE (AP)") is None
    assert description_phase("LIVER 3 PHASE (C/A/P)") is None
    assert description_phase("PRE ARTERIAL") is None  # two phases named: none trusted
    assert _phases([PhaseEvidence("x", series_description="PRE CONTRAST")]) == [PRE]


def test_bolus_timing_decides_without_vessels() -> None:
    e = [
        PhaseEvidence(
            "a", acquisition_time="101030", contrast_bolus_agent="OMNI", contrast_bolus_start_time="101000"
        ),
        PhaseEvidence(
            "b", acquisition_time="101120", contrast_bolus_agent="OMNI", contrast_bolus_start_time="101000"
        ),
        PhaseEvidence(
            "c", acquisition_time="101400", contrast_bolus_agent="OMNI", contrast_bolus_start_time="101000"
        ),
    ]
    assert _phases(e) == [ARTERIAL, PORTAL_VENOUS, DELAYED]


def test_time_order_overrules_a_weak_measurement() -> None:
    # Alone, (260, 120) is arterial; acquired after a clear portal venous scan it cannot be (phases
    # never go back in time), and the clear scan is not bent to fit it.
    x = dict(aorta_hu=260, portal_vein_hu=120)
    assert _phases([PhaseEvidence("x", **x)]) == [ARTERIAL]
    calls = assign_phases(
        [
            PhaseEvidence("x", acquisition_time="100400", **x),
            PhaseEvidence("pv", acquisition_time="100100", aorta_hu=165, portal_vein_hu=172),
        ]
    )
    assert [c.phase for c in calls] == [PORTAL_VENOUS, PORTAL_VENOUS]
    assert calls[0].evidence[-1] == "order:2_of_2_by_acquisition_time"
    assert calls[0].confidence < calls[1].confidence


def test_stacked_phases_keep_acquisition_number_order() -> None:
    # One series, same time stamp, two acquisitions: the lower AcquisitionNumber is earlier.
    e = [
        PhaseEvidence("s:3", series_number=3, acquisition_number=3, aorta_hu=150, portal_vein_hu=150),
        PhaseEvidence("s:2", series_number=3, acquisition_number=2, aorta_hu=150, portal_vein_hu=150),
    ]
    calls = {c.key: c for c in assign_phases(e)}
    assert calls["s:2"].evidence[-1] == "order:1_of_2_by_series_and_acquisition_number"
    assert calls["s:3"].evidence[-1] == "order:2_of_2_by_series_and_acquisition_number"


def test_no_evidence_is_unknown_with_zero_confidence() -> None:
    (call,) = assign_phases([PhaseEvidence("k", series_description="2.5 STANDARD")])
    assert (call.phase, call.confidence, call.evidence) == (UNKNOWN, 0.0, ("no_evidence",))
    assert assign_phases([]) == []


def test_contrast_agent_without_timing_rules_out_pre() -> None:
    # Vessels at native levels but an agent recorded: still pre by HU, with less confidence.
    plain = assign_phases([PhaseEvidence("a", aorta_hu=55, portal_vein_hu=55)])[0]
    agent = assign_phases([PhaseEvidence("a", aorta_hu=55, portal_vein_hu=55, contrast_bolus_agent="X")])[0]
    assert plain.phase == agent.phase == PRE
    assert agent.confidence < plain.confidence
    assert "contrast_bolus_agent:'X'->not_pre" in agent.evidence


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("101530", 36930.0),
        ("101530.25", 36930.25),
        ("10:15:30", 36930.0),
        ("1015", 36900.0),
        ("", None),
        ("25", None),
    ],
)
def test_seconds_of_dicom_times(text: str, seconds: float | None) -> None:
    assert seconds_of(text) == seconds

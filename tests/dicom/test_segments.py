"""Segment -> label: SNOMED code first, then label text with synonyms; unknowns reported."""

from __future__ import annotations

import pytest

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import Segment
from hcc_shards.dicom.segments import label_for_segment, map_segments
from hcc_shards.labels import AORTA, LIVER, PORTAL_VEIN, TUMOR

CONFIG = BuildConfig()


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        (Segment(1, "Liver", "SCT:10200004", "Liver"), (LIVER, "code")),
        (Segment(1, "whatever", "SRT:T-62000", "Liver"), (LIVER, "code")),
        (Segment(2, "Mass", "SCT:4147007", "Mass"), (TUMOR, "code")),
        # a SNOMED code under the other SNOMED scheme designator
        (Segment(2, "x", "SRT:4147007", ""), (TUMOR, "code")),
        (Segment(3, "Portal vein", "", ""), (PORTAL_VEIN, "text")),
        (Segment(4, "  Abdominal   Aorta ", "99LOCAL:1", "Local code"), (AORTA, "text")),
        (Segment(2, "Tumour", "", ""), (TUMOR, "text")),
        (Segment(2, "Necrosis", "", ""), (TUMOR, "text")),
        (Segment(2, "NEOPLASM", "", ""), (TUMOR, "text")),
        (Segment(3, "portal_vein", "", ""), (PORTAL_VEIN, "text")),
        (Segment(5, "Spleen", "SCT:78961009", "Spleen"), None),
    ],
)
def test_label_for_segment(segment, expected):
    assert label_for_segment(segment, CONFIG) == expected


def test_code_wins_over_text():
    # Label text says liver, the code says mass: the code decides.
    assert label_for_segment(Segment(1, "Liver", "SCT:4147007", "Mass"), CONFIG) == (TUMOR, "code")


def test_mapping_is_configurable():
    config = BuildConfig(segment_synonyms=(("spleen", LIVER),), segment_codes=())
    assert label_for_segment(Segment(5, "Spleen", "SCT:78961009", "Spleen"), config) == (LIVER, "text")
    assert label_for_segment(Segment(1, "Liver", "SCT:10200004", "Liver"), config) is None


def test_map_segments_reports_unknowns_and_skips_labelmap_background():
    segments = (
        Segment(0, "Background", "DCM:125040", "Background"),
        Segment(1, "Liver", "SCT:10200004", "Liver"),
        Segment(2, "Mass", "SCT:4147007", "Mass"),
        Segment(3, "Spleen", "SCT:78961009", "Spleen"),
    )
    m = map_segments(segments, CONFIG)
    assert m.as_dict() == {1: LIVER, 2: TUMOR}
    assert m.unknown == ("3:Spleen (SCT:78961009 Spleen)",)
    assert dict(m.matched_by) == {1: "code", 2: "code"}

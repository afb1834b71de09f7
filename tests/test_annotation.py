"""The annotation-source rule (docs/FORMAT.md "Annotation source")."""

from __future__ import annotations

import pytest

from hcc_shards.annotation import ANNOTATION_SOURCES, annotation_source, parse_sources


@pytest.mark.parametrize(
    ("types", "description", "creator", "analysis", "expected"),
    [
        # HCC-TACE-Seg as IDC serves it
        (["SEMIAUTOMATIC"] * 4, "Segmentation", "", "", "manual"),
        (["AUTOMATIC"] * 2, "AIMI liver-tumor AI segmentation", "", "bamf_aimi_annotations", "ai"),
        (["SEMIAUTOMATIC"], "AIMI liver-tumor radiologist 7 corrected segmentation", "", "", "ai_corrected"),
        (
            ["MANUAL"],
            "AIMI liver-tumor radiologist 7 corrected segmentation",
            "",
            "bamf_aimi_annotations",
            "ai_corrected",
        ),
        (["MANUAL"], "Liver", "Doe^Jane", "", "manual"),
        ([], "nnU-Net prediction", "", "", "ai"),
        ([], "Segmentation", "BAMF model", "", "ai"),
        # cannot be told: unknown, never manual
        ([], "Segmentation", "", "", "unknown"),
        (["AUTOMATIC", "MANUAL"], "Segmentation", "", "", "unknown"),
        (["MANUAL"], "AI segmentation", "", "", "unknown"),
        (["MANUAL"], "Segmentation", "", "bamf_aimi_annotations", "unknown"),
        (["MANUAL"], "corrected segmentation", "", "", "unknown"),
        (["SOMETHING"], "Segmentation", "", "", "unknown"),
    ],
)
def test_rule(types, description, creator, analysis, expected) -> None:
    decision = annotation_source(types, description, creator, analysis)
    assert decision.source == expected, decision.reason
    assert decision.reason


def test_ai_words_are_whole_words() -> None:
    # "Maintenance", "said", "remodel" hold the letters but not the words.
    assert annotation_source(["MANUAL"], "Said remodelled maintenance").source == "manual"


def test_parse_sources() -> None:
    assert parse_sources(None) == parse_sources("") == parse_sources("all") == ANNOTATION_SOURCES
    assert parse_sources("ai_corrected, manual") == ("manual", "ai_corrected")
    with pytest.raises(
        ValueError, match=r"among \['manual', 'ai', 'ai_corrected', 'unknown'\], got \['human'\]"
    ):
        parse_sources("human")

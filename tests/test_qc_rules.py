"""QC rules, defined once: tumour > 1.5 x liver (liver 0 included) and missing annotated labels;
the decoder and the shard writer raise exactly what the rules say (the synthetic truth calls them)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hcc_shards.labels import LABELS, LIVER, TUMOR
from hcc_shards.qc_rules import (
    TUMOR_GT_LIVER,
    TUMOR_LIVER_RATIO,
    is_rule_flag,
    missing_flag,
    qc_flags,
    tumor_gt_liver,
)

sys.path.insert(0, str(Path(__file__).parent / "shards"))  # the phantom cases of the writer's tests

ALL = tuple(lab.name for lab in LABELS)


@pytest.mark.parametrize(
    ("tumor", "liver", "flagged"),
    [
        (151, 100, True),
        (150, 100, False),  # exactly 1.5 x: not more
        (149, 100, False),
        (3, 2, False),
        (4, 2, True),
        (1, 0, True),  # a liver without voxels and some tumour: flagged
        (0, 0, False),  # neither: nothing to compare
        (0, 100, False),
    ],
)
def test_tumor_gt_liver_boundaries(tumor: int, liver: int, flagged: bool) -> None:
    assert TUMOR_LIVER_RATIO == 1.5 and TUMOR_GT_LIVER == "tumor_gt_1.5x_liver"
    assert tumor_gt_liver(tumor, liver) is flagged
    assert qc_flags({"tumor": tumor, "liver": liver}) == ((TUMOR_GT_LIVER,) if flagged else ())


def test_the_ratio_needs_both_labels_annotated_and_missing_labels_are_flagged() -> None:
    counts = {"liver": 0, "tumor": 10, "portal_vein": 5, "aorta": 7}
    assert qc_flags(counts) == (TUMOR_GT_LIVER,)  # label set unknown: the ratio rule only
    assert qc_flags(counts, annotated=ALL) == ("missing_liver", TUMOR_GT_LIVER)
    assert qc_flags(counts, annotated=("tumor", "aorta")) == ()  # no liver annotated: no ratio
    assert qc_flags({"liver": 5}, annotated=("liver", "tumor")) == ("missing_tumor",)
    assert qc_flags({}, annotated=("aorta",)) == ("missing_aorta",)
    assert qc_flags({}) == ()


def test_rule_flags_are_recognised() -> None:
    assert is_rule_flag(TUMOR_GT_LIVER) and is_rule_flag(missing_flag("aorta"))
    assert missing_flag("portal_vein") == "missing_portal_vein"
    assert not is_rule_flag("some_decoder_warning")


def _label(tumor: int, liver: int, shape=(4, 8, 8)) -> np.ndarray:
    label = np.zeros(shape, np.uint8).ravel()
    label[:tumor] = TUMOR
    label[tumor : tumor + liver] = LIVER
    return label.reshape(shape)


@pytest.mark.parametrize(("tumor", "liver"), [(31, 20), (30, 20), (1, 0), (0, 0), (0, 9)])
def test_the_decoder_applies_the_rule_to_its_label(tumor: int, liver: int) -> None:
    from hcc_shards.dicom.decode import qc_flags as decoder_flags

    assert decoder_flags(_label(tumor, liver)) == qc_flags({"tumor": tumor, "liver": liver})


def test_the_manifest_decides_the_rules_on_the_stored_labels(tmp_path) -> None:
    from phantoms import make_case

    from hcc_shards.config import BuildConfig
    from hcc_shards.dicom.decode import qc_flags as decoder_flags
    from hcc_shards.shards.writer import write_case

    config = BuildConfig(chunk_shape=(4, 8, 8), shard_shape=(4, 16, 16))
    base = make_case((4, 16, 16), (2.0, 1.0, 1.0))
    stale = (TUMOR_GT_LIVER, "missing_aorta", "kept_decoder_flag")
    for i, (tumor, liver, want) in enumerate(
        [
            (151, 100, {TUMOR_GT_LIVER}),
            (150, 100, set()),
            (5, 0, {TUMOR_GT_LIVER, "missing_liver"}),
            (0, 0, {"missing_liver", "missing_tumor"}),
        ]
    ):
        label = _label(tumor, liver, base.geometry.shape)
        label.ravel()[-3:] = [lab.value for lab in LABELS if lab.name in ("portal_vein", "aorta")] + [0]
        case = replace(base, label=label, qc_flags=decoder_flags(label))
        version = str(tmp_path / str(i) / "versions" / config.config_hash())
        assert set(write_case(case, version, config, split="train").qc_flags) == want, (tumor, liver)
        # Flags of the rules raised before are decided again; other flags are kept.
        stale_case = replace(case, qc_flags=stale)
        version = str(tmp_path / f"{i}s" / "versions" / config.config_hash())
        got = set(write_case(stale_case, version, config, split="train").qc_flags)
        assert got == want | {"kept_decoder_flag"}, (tumor, liver)

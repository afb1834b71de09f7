"""``hcc-shards plan`` and the build over one corpus: the same pairings and the same records.

The plan reads every header and every paired SEG, not the CT pixels, so a CT that fails only
when its pixels are decoded is a case in the plan and a record in the build; both still name the
same SEG. Records of the listing, index and pairing stages must be the same, one for one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from hcc_shards.text import storable

EARLY_STAGES = ("list", "index", "pair")
"""Stages the plan and the build share in full."""


def _key(r: dict[str, Any], root: str) -> tuple[str, str, str, str]:
    url = storable(r["url"] or "")
    prefix = storable(root.rstrip("/") + "/")
    return (r["code"], r["stage"], url.removeprefix(prefix), r["sop_instance_uid"] or "")


def assert_plan_matches_build(records: list[dict[str, Any]], version: Path, root: str) -> int:
    """Compare plan records with a build's committed version; return the number of SEGs compared."""
    manifest = pq.read_table(version / "manifest.parquet").to_pylist()
    quarantine = pq.read_table(version / "quarantine.parquet").to_pylist()
    plan_cases = [r for r in records if r["kind"] == "case"]
    plan_records = [r for r in records if r["kind"] == "quarantine"]

    def early(rs: list[dict[str, Any]]) -> Counter:
        return Counter(_key(r, root) for r in rs if r["stage"] in EARLY_STAGES)

    assert early(plan_records) == early(quarantine), "listing, index or pairing records differ"
    # Every SEG the plan paired is a case or a later record of the build, and the reverse; keyed by
    # (PatientID, SEG UID): copied UIDs under other PatientIDs are distinct inputs.
    paired_in_plan = Counter((r["patient_id"], r["seg_sop_instance_uid"]) for r in plan_cases) + Counter(
        (r["patient_id"], r["sop_instance_uid"]) for r in plan_records if r["stage"] not in EARLY_STAGES
    )
    paired_in_build = Counter((r["patient_id"], r["seg_sop_instance_uid"]) for r in manifest) + Counter(
        (r["patient_id"], r["sop_instance_uid"]) for r in quarantine if r["stage"] not in EARLY_STAGES
    )
    assert paired_in_plan == paired_in_build, "the plan and the build paired different SEGs"
    built = {r["case_id"]: r for r in manifest}
    for case in plan_cases:
        row = built.get(case["case_id"])
        if row is not None:  # same pairing: same SEG, CT series, acquisition and image
            assert (case["seg_sop_instance_uid"], case["ct_series_instance_uid"], case["image_id"]) == (
                row["seg_sop_instance_uid"],
                row["ct_series_instance_uid"],
                row["image_id"],
            )
            assert case["ct_acquisition_number"] == row["ct_acquisition_number"]
    assert set(built) <= {c["case_id"] for c in plan_cases}, "the build has a case the plan does not list"
    return sum(paired_in_plan.values())

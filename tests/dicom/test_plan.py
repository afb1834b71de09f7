"""``hcc-shards plan``: JSON lines as in docs/FORMAT.md, and the human-readable default."""

from __future__ import annotations

import json

import fsspec
import pytest
from dicom_corpus import DATA

from hcc_shards.build.dryrun import plan_records
from hcc_shards.cli import main
from hcc_shards.config import BuildConfig

CASE_FIELDS = {
    "kind",
    "image_id",
    "annotation_source",
    "annotated_labels",
    "case_id",
    "patient_id",
    "seg_sop_instance_uid",
    "seg_series_instance_uid",
    "ct_series_instance_uid",
    "ct_acquisition_number",
    "pairing_method",
    "shape_zyx",
    "spacing_zyx",
    "voxels",
    "unknown_segments",
    "qc_flags",
    "warnings",
}


@pytest.fixture(scope="module")
def plan_lines(tmp_path_factory) -> list[dict]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["plan", str(DATA), "--json", "--workers", "2"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_plan_json_records(plan_lines):
    kinds = [r["kind"] for r in plan_lines]
    assert kinds[-1] == "summary" and kinds.count("summary") == 1
    cases = [r for r in plan_lines if r["kind"] == "case"]
    assert all(set(r) == CASE_FIELDS for r in cases)
    liver = next(r for r in cases if r["seg_sop_instance_uid"].endswith(".665796"))
    # A SEG of the liver alone annotates nothing else: the other labels are null, not 0.
    assert liver["voxels"] == {"liver": 107098, "tumor": None, "portal_vein": None, "aorta": None}
    assert liver["annotated_labels"] == ["liver"]
    assert liver["ct_acquisition_number"] == 1 and liver["pairing_method"] == "referenced_series"
    assert liver["shape_zyx"] == [3, 512, 512]
    quarantined = [r for r in plan_lines if r["kind"] == "quarantine"]
    orphan = next(r for r in quarantined if r["url"].endswith("sr-example/seg.dcm"))
    assert orphan["code"] == "seg_without_ct" and orphan["stage"] == "pair"
    summary = plan_lines[-1]
    assert summary["cases"] == len(cases)
    assert summary["quarantined"] == len(quarantined)
    assert sum(summary["by_reason"].values()) == len(quarantined)
    assert summary["files"] == sum(1 for p in DATA.rglob("*") if p.is_file())


def test_every_seg_file_ends_as_exactly_one_case_or_record(plan_lines, corpus_headers):
    case_uids = {r["seg_sop_instance_uid"] for r in plan_lines if r["kind"] == "case"}
    record_urls = [r["url"] for r in plan_lines if r["kind"] == "quarantine"]
    segs = [h for h in corpus_headers.values() if h.is_seg]
    assert len(segs) == plan_lines[-1]["segs"] == 12
    for h in segs:
        as_case = h.sop_instance_uid in case_uids and h.url not in record_urls
        assert as_case + record_urls.count(h.url) == 1, h.url


def test_plan_human_output(capsys):
    assert main(["plan", str(DATA / "dcmqi" / "data" / "segmentations" / "24x38x3")]) == 0
    text = capsys.readouterr().out
    assert "CASE 123456" in text
    assert "liver=315" in text
    assert text.rstrip().splitlines()[-2:] == [
        "SUMMARY files=5 instances=5 series=3 segs=1 cases=1 quarantined=0",
        "    patients=1 (0 with CT but no SEG), CT series=2 (1 used by no case)",
    ]


def test_plan_over_an_object_store(s3):
    """The same dry run over s3:// with a flat layout: nothing comes from the object names."""
    bucket = s3.make_bucket("plan-flat")
    fs = fsspec.filesystem("s3", **s3.storage_options)
    folder = DATA / "dcmqi" / "data" / "segmentations" / "24x38x3"
    for k, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        fs.pipe_file(f"{bucket}/flat/{k:04d}.dcm", path.read_bytes())
    fs.invalidate_cache()
    records = list(plan_records(f"{bucket}/flat", BuildConfig(), s3.storage_options, workers=4))
    (case,) = [r for r in records if r["kind"] == "case"]
    assert case["voxels"]["liver"] == 315 and case["shape_zyx"] == [3, 38, 24]
    assert records[-1]["files"] == 5 and records[-1]["quarantined"] == 0


def test_plan_and_build_agree_on_the_public_files(plan_lines, tmp_path) -> None:
    """The real CT and SEG files (pydicom, highdicom, dcmqi) through the plan and through the stages
    of the build, driven in this process."""
    from plan_vs_build import assert_plan_matches_build

    from hcc_shards.build.local import run_local
    from hcc_shards.build.plan import BuildPlan, flag_values

    out = tmp_path / "out"
    run_local(BuildPlan.from_flags(flag_values(input=str(DATA), output=str(out))), workers=2)
    (version,) = (out / "versions").iterdir()
    assert assert_plan_matches_build(plan_lines, version, str(DATA)) >= 1

"""A build with a clinical table, stratified splits and folds: outputs, card, summary, reader filter."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from pipeline_helpers import IN_PROCESS, Cohort, build, read_table, version_dir

from hcc_shards.read import open_dataset

CLINICAL = (
    "ID,TTP,Censored_0_progressed_1,OS,Death_1_StillAliveorLostToFU_0,Sex\n"
    "HCC_001,10.5,1,30,1,1\n"
    "HCC_002,oops,0,40,0,2\n"
    "HCC_002,11,0,40,0,2\n"
    "HCC_099,5,1,9,1,1\n"
)


def test_build_joins_clinical_and_stratifies(small_cohort: Cohort, tmp_path: Path) -> None:
    table = tmp_path / "clinical.csv"
    table.write_text(CLINICAL)
    out = tmp_path / "out"
    flags = [f"--clinical={table}", "--stratify_by=Sex", "--folds=2"]
    summary = build(small_cohort.root, str(out), *IN_PROCESS, *flags)
    assert summary.clinical_joined == "2/3" and summary.split_method == "stratified"
    assert dict(summary.clinical_problems) == {
        "duplicate_id": 1,
        "unparsable_cell": 1,
        "row_without_case": 1,
        "case_without_row": 1,
    }
    vdir = version_dir(out)
    rows = read_table(vdir / "manifest.parquet")
    assert {r["split"] for r in rows} == {"train", "val", "test"}  # three patients, one each
    assert all((r["fold"] is None) == (r["split"] == "test") for r in rows)
    clinical = pq.read_table(vdir / "clinical.parquet")
    assert clinical.column("patient_id").to_pylist() == ["HCC_001", "HCC_002", "HCC_099"]
    assert clinical.column("TTP").to_pylist() == [10.5, None, 5.0]  # the first HCC_002 row is kept
    card = (vdir / "DATASET.md").read_text()
    for heading in ("## Splits", "## Clinical data", "## Survival", "| duplicate_id | 1 |", "| HCC_003 |"):
        assert heading in card, heading
    assert (vdir / "qc" / "survival.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((vdir / "dataset.json").read_text())
    assert doc["clinical"]["joined"] == 2 and doc["splits"]["stratify_by"] == "Sex"
    assert doc["config"]["folds"] == 2 and doc["config"]["stratify_by"] == "Sex"
    ds = open_dataset(str(out))
    assert set(ds.filter(pc.field("TTP") > 10).manifest.column("patient_id").to_pylist()) == {"HCC_001"}
    assert ds.case(ds.case_ids[0]).metadata["Sex"] in (1, 2, None)
    again = build(small_cohort.root, str(out), *IN_PROCESS, *flags)
    assert not again.committed  # nothing changed
    table.write_text(CLINICAL.replace("10.5", "12.5"))
    assert build(small_cohort.root, str(out), *IN_PROCESS, *flags).committed  # the table changed


def test_split_file_gives_the_splits(small_cohort: Cohort, tmp_path: Path) -> None:
    split_file = tmp_path / "splits_final.json"
    split_file.write_text(json.dumps([{"train": ["HCC_001"], "val": ["HCC_002", "HCC_404"]}]))
    out = tmp_path / "out"
    summary = build(small_cohort.root, str(out), *IN_PROCESS, f"--split_file={split_file}")
    assert summary.split_method == "file" and "HCC_404" in summary.split_problems[0]
    splits = {
        r["patient_id"]: (r["split"], r["fold"]) for r in read_table(version_dir(out) / "manifest.parquet")
    }
    assert splits == {"HCC_001": ("train", None), "HCC_002": ("val", 0), "HCC_003": ("test", None)}

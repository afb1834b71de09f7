"""The ``hcc-shards build`` and ``hcc-shards demo`` commands, run in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_helpers import Cohort, read_table, version_dir

from hcc_shards.cli import main


def test_build_command_takes_our_flags_anywhere_and_passes_beam_flags(
    small_cohort: Cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "build",
            "--spacing",
            "10,5,5",
            small_cohort.root,
            str(out),
            "--limit",
            "1",
            "--quiet",
            "--direct_running_mode=in_memory",
            "--direct_num_workers=1",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    assert "1 written, 0 already complete, 1 selected" in printed.out
    assert "[hcc-shards] cases" not in printed.err  # --quiet
    rows = read_table(version_dir(out) / "manifest.parquet")
    assert [r["spacing_zyx"] for r in rows] == [[10.0, 5.0, 5.0]]


def test_build_command_reports_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", str(tmp_path), str(tmp_path / "out"), "--spacing", "1,2", "--quiet"])
    assert code == 2
    assert "--spacing must be 'auto' or three positive mm values" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_generates_builds_and_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", str(tmp_path / "demo"), "--patients", "3", "--workers", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    version = version_dir(tmp_path / "demo" / "dataset")
    assert f"dataset card      {version / 'DATASET.md'}" in printed
    assert f"QC images         {version / 'qc'}/" in printed
    assert "batch image (8, 16, 48, 48) int16" in printed
    stored = json.loads((version / "dataset.json").read_text())
    assert stored["counts"]["cases"] == stored["summary"]["cases_written"] > 0
    assert (version / "DATASET.md").exists() and list((version / "qc").glob("*.png"))

"""``hcc-shards info``, ``ls`` and ``show`` on a dataset built by the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_helpers import Cohort, build, version_dir

from hcc_shards.cli import main


@pytest.fixture(scope="module")
def built(small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "out"
    build(small_cohort.root, str(out), "--direct_running_mode=in_memory", "--direct_num_workers=1")
    return out


def test_info_on_a_build(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(built), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    stored = json.loads((version_dir(built) / "dataset.json").read_text())
    assert facts["version"] == stored["config_hash"] and facts["cases"] == stored["counts"]["cases"] > 0
    assert sum(facts["by_split"].values()) == facts["cases"]
    assert facts["quarantine_by_reason"] == stored["counts"]["quarantine_by_reason"]
    assert facts["intensity"] == stored["foreground_intensity_properties_per_channel"]["0"]
    assert main(["info", str(built)]) == 0
    out = capsys.readouterr().out
    assert "foreground HU     mean" in out and "quarantined       " in out and "(z, y, x)" in out


def test_ls_and_show_on_a_build(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", str(built), "--filter", "patient_id=HCC_001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = lines[1:-1]
    assert rows and all(" HCC_001 " in f" {r} " for r in rows)
    case_id = rows[0].split()[0]
    assert main(["show", str(built), case_id]) == 0
    out = capsys.readouterr().out
    assert f"case {case_id}" in out and "geometry (array order z, y, x; LPS mm):" in out
    assert "axes point towards" in out and "liver" in out
    qc = version_dir(built) / "qc" / f"{case_id}.png"
    assert f"QC image  {qc}" in out and "(missing)" not in out

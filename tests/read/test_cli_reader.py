"""``hcc-shards info``, ``ls`` and ``show`` with the reader-only install; the build commands say
which extra they need instead of a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hcc_shards.cli import main

pytestmark = pytest.mark.reader_env

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hcc_shards.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_build_without_the_pipeline_extra_names_the_extra(tmp_path):
    done = _cli("build", str(tmp_path), str(tmp_path / "out"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    from hcc_shards.cli import PIPELINE_MODULES

    # The first module of the extra the command reaches for is named (the build's stages import the
    # DICOM stack before any engine).
    assert "pip install 'hcc-shards[pipeline]'" in lines[0]
    assert any(f"module '{m}'" in lines[0] for m in PIPELINE_MODULES), lines[0]


def test_version_and_user_help():
    import hcc_shards

    done = _cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"hcc-shards {hcc_shards.__version__}"
    help_text = _cli("--help").stdout
    for example in ("hcc-shards build ./HCC-TACE-Seg ./hcc", "hcc-shards info ./hcc", "hcc-shards ls ./hcc"):
        assert example in help_text


def test_info_counts_splits_spacing_and_sizes(mini_root, capsys):
    assert main(["info", mini_root]) == 0
    out = capsys.readouterr().out
    assert "version           0123456789ab (format 1" in out
    assert "by split          train 2, val 1" in out
    assert "min 6 x 20 x 18, median 13 x 40 x 37, max 20 x 48 x 40 voxels (z, y, x)" in out
    assert main(["info", mini_root, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["cases"] == 3 and facts["by_split"] == {"train": 2, "val": 1}
    assert facts["by_annotation_source"] is None  # the mini manifest has no such column


def test_ls_filters_and_reports_bad_columns(mini_root, capsys):
    assert main(["ls", mini_root, "--filter", "split=val"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["case_id", "patient_id", "split"]
    assert [line.split()[0] for line in out[1:-1]] == ["C"] and out[-1] == "1 of 3 cases"
    assert main(["ls", mini_root, "--filter", "split=train", "--filter", "voxels_tumor=204"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]] == ["B"]
    assert main(["ls", mini_root, "--filter", "nope=1"]) == 2
    assert "no manifest column 'nope'" in capsys.readouterr().err


def test_show_prints_row_geometry_labels_and_qc_path(mini_root, capsys):
    assert main(["show", mini_root, "B"]) == 0
    out = capsys.readouterr().out
    assert "  split                       train" in out
    assert "spacing                     2 x 1 x 1.5 mm" in out
    assert "axes point towards          z: S, y: P, x: L" in out
    assert "  2      tumor        204" in out
    assert "qc/B.png" in out
    assert main(["show", mini_root, "Z"]) == 2
    assert "no case 'Z'" in capsys.readouterr().err


def test_inspecting_a_folder_that_is_no_dataset_fails_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["info", str(tmp_path)])
    assert stopped.value.code == 2
    assert "neither LATEST.json nor dataset.json" in capsys.readouterr().err

"""Operator mistakes stop early with one line and their own exit code, and never replace good output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from reliability_helpers import SPACING, version_dir

from hcc_shards.cli import main as cli_main
from hcc_shards.config import BuildConfig
from hcc_shards.errors import FormatError, UnknownFlagError
from hcc_shards.preflight import drop_datasets
from hcc_shards.shards import commit_dataset
from hcc_shards.shards.manifest import ManifestRow
from pipelines.beam.options import check_flags


@pytest.fixture
def built(small_build: str, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(small_build, out)
    return out


def _latest(out: Path) -> bytes:
    return (out / "LATEST.json").read_bytes()


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("hcc-shards")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_beam_flags_pass_and_typos_do_not() -> None:
    check_flags(["--input=a", "--output=b", "--runner=DirectRunner", "--direct_num_workers", "2"])
    check_flags(["--dask_client_address=tcp://h:8786", "--temp_location=gs://b/t", "--experiments=x"])
    with pytest.raises(UnknownFlagError, match="--spacng"):
        check_flags(["--input=a", "--spacng=1,1,1"])
    with pytest.raises(UnknownFlagError, match="--direct_num_worker"):
        check_flags(["--direct_num_worker=2"])  # no abbreviations


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["build", "{cohort}", "{out}", "--spacng", "1,1,1"], 2, "unknown flag --spacng"),
        (["build", "gss://bucket/x", "{out}"], 4, "unknown or unavailable URL scheme 'gss'"),
        (["build", "{cohort}", "gss://bucket/x"], 4, "unknown or unavailable URL scheme 'gss'"),
        (["build", "{tmp}/no-such-folder", "{out}"], 3, "does not exist"),
        (["build", "{cohort}", "{out}/LATEST.json"], 5, "is a file"),
        # procfs refuses new entries even to root (a chmod-ed folder would not stop root).
        (["build", "{cohort}", "/proc/hcc-shards-out"], 5, "cannot be written"),
        (["plan", "gss://bucket/x"], 4, "URL scheme 'gss'"),
        (["plan", "{tmp}/no-such-folder"], 3, "does not exist"),
    ],
)
def test_operator_mistake_exit_codes(
    argv: list[str], code: int, needle: str, small_cohort: str, built: Path, tmp_path: Path, capsys
) -> None:
    before = _latest(built)
    args = [a.format(cohort=small_cohort, out=built, tmp=tmp_path) for a in argv]
    assert cli_main([*args, "--quiet"] if args[0] == "build" else args) == code
    assert needle in _one_line(capsys.readouterr().err)
    assert _latest(built) == before


@pytest.mark.slow
def test_unwritable_bucket_is_found_before_any_work(s3, small_cohort: str, capsys) -> None:
    """OUTPUT in a bucket that does not exist: the write probe fails, one line, exit 5, nothing read."""
    options = json.dumps(s3.storage_options)
    code = cli_main(
        ["build", small_cohort, "s3://no-such-bucket-hcc/out", "--storage-options", options, "--quiet"]
    )
    assert code == 5
    assert "cannot be written" in _one_line(capsys.readouterr().err)


def test_empty_build_leaves_latest_unless_allowed(built: Path, tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.dcm").write_bytes(b"not DICOM")
    manifest = version_dir(built) / "manifest.parquet"
    before, rows = _latest(built), manifest.read_bytes()
    assert cli_main(["build", str(junk), str(built), "--spacing", SPACING, "--quiet"]) == 6
    assert "LATEST.json is unchanged" in _one_line(capsys.readouterr().err)
    assert (_latest(built), manifest.read_bytes()) == (before, rows)
    # Same configuration, same version: --allow-empty commits it with no case.
    assert cli_main(["build", str(junk), str(built), "--spacing", SPACING, "--quiet", "--allow-empty"]) == 0
    assert manifest.read_bytes() != rows


def test_output_inside_input_is_not_listed(small_cohort: str, tmp_path: Path) -> None:
    paths = ["in/a.dcm", "in/out/LATEST.json", "in/out/versions/x/dataset.json", "in/b/c.dcm"]
    assert drop_datasets(paths) == ["in/a.dcm", "in/b/c.dcm"]


def test_commit_refuses_rows_that_do_not_match_their_cases(built: Path) -> None:
    v = version_dir(built)
    config = BuildConfig.from_dict(json.loads((v / "dataset.json").read_text())["config"])
    marker = sorted((v / "complete").iterdir())[0]
    row = ManifestRow.from_dict(json.loads(marker.read_text())["cases"][0]["row"])
    image = v / row.image_path
    before = _latest(built)
    bad = ManifestRow.from_dict({**row.to_dict(), "checksum": "0" * 64})
    with pytest.raises(FormatError, match="checksum"):
        commit_dataset(str(built), [bad], [], config, {})
    with pytest.raises(FormatError, match="more than once"):
        commit_dataset(str(built), [row, row], [], config, {})
    (image / "zarr.json").unlink()
    with pytest.raises(FormatError, match=r"zarr\.json"):
        commit_dataset(str(built), [row], [], config, {})
    assert _latest(built) == before


def test_verify_checks_dataset_json_counts(built: Path, capsys) -> None:
    assert cli_main(["verify", str(built)]) == 0
    path = version_dir(built) / "dataset.json"
    doc = json.loads(path.read_text())
    doc["counts"]["cases"] += 1
    path.write_text(json.dumps(doc))
    assert cli_main(["verify", str(built)]) == 2
    assert "dataset.json counts cases=" in capsys.readouterr().err

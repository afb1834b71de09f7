"""Limits: a 600-slice CT builds within the documented memory bound; a malformed pointer, dataset.json
or manifest gives the reader a FormatError that names the file."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from long_ct import write_long_ct
from reliability_helpers import REPO, build_command, child_env, read_rows, version_dir

from hcc_shards.errors import FormatError
from hcc_shards.read import open_dataset

BASE_MIB = 450
"""Peak RSS of a one-case build, Beam included, before the case's arrays (docs/RELIABILITY.md)."""
BYTES_PER_VOXEL = 4
"""Peak RSS above BASE_MIB per CT voxel of the case (int16 HU, its label map, resampling passes)."""


def memory_bound_mib(voxels: int) -> float:
    return BASE_MIB + BYTES_PER_VOXEL * voxels / 2**20


def _peak_rss_mib(argv: list[str]) -> tuple[int, float, str]:
    """Run ``argv`` under a fresh Python parent whose only child it is; (returncode, peak RSS MiB, stderr)."""
    probe = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(json.loads(sys.argv[1]), capture_output=True)\n"
        "print(json.dumps([p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,"
        " p.stderr.decode()[-3000:]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(argv)],
        env=child_env(),
        capture_output=True,
        check=True,
        timeout=1800,
    )
    code, peak, err = json.loads(out.stdout)
    return int(code), float(peak), err


def _long_ct_builds_within_bound(tmp_path: Path, size: int) -> None:
    assert write_long_ct(tmp_path / "in", slices=600, size=size) == 601
    code, peak, err = _peak_rss_mib(build_command(str(tmp_path / "in"), str(tmp_path / "out")))
    assert code == 0, err
    (row,) = read_rows(version_dir(tmp_path / "out") / "manifest.parquet")
    assert row["source_shape_zyx"] == [600, size, size]
    assert row["voxels_liver"] > 0 and row["voxels_tumor"] > 0
    bound = memory_bound_mib(600 * size * size)
    print(f"600 x {size} x {size}: peak RSS {peak:.0f} MiB, bound {bound:.0f} MiB")
    assert peak <= bound, f"peak RSS {peak:.0f} MiB above the documented bound {bound:.0f} MiB"


@pytest.mark.slow
def test_600_slice_ct_builds_within_memory_bound(tmp_path: Path) -> None:
    _long_ct_builds_within_bound(tmp_path, 64)


@pytest.mark.soak
def test_600_slice_full_size_ct_builds_within_memory_bound(tmp_path: Path) -> None:
    _long_ct_builds_within_bound(tmp_path, 512)


# -- malformed metadata ------------------------------------------------------------------------


@pytest.fixture()
def dataset(small_build: str, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(small_build, out)
    return out


def _table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _manifest(dataset: Path) -> pa.Table:
    return pq.read_table(version_dir(dataset) / "manifest.parquet")


BREAKAGES = {
    "latest_not_json": ("LATEST.json", lambda d: b"{not json"),
    "latest_wrong_version": (
        "LATEST.json",
        lambda d: json.dumps({"format_version": 99, "path": "x"}).encode(),
    ),
    "latest_points_nowhere": (
        "LATEST.json",
        lambda d: json.dumps({"format_version": 1, "version": "0", "path": "versions/0"}).encode(),
    ),
    "dataset_json_truncated": (
        "dataset.json",
        lambda d: (version_dir(d) / "dataset.json").read_bytes()[:100],
    ),
    "dataset_json_array": ("dataset.json", lambda d: b"[1, 2, 3]"),
    "dataset_json_wrong_version": (
        "dataset.json",
        lambda d: json.dumps(
            {**json.loads((version_dir(d) / "dataset.json").read_text()), "format_version": 3}
        ).encode(),
    ),
    "dataset_json_no_hash": (
        "dataset.json",
        lambda d: json.dumps(
            {
                k: v
                for k, v in json.loads((version_dir(d) / "dataset.json").read_text()).items()
                if k != "config_hash"
            }
        ).encode(),
    ),
    "dataset_json_bad_spacing": (
        "dataset.json",
        lambda d: json.dumps(
            {**json.loads((version_dir(d) / "dataset.json").read_text()), "target_spacing_zyx": [1, "a"]}
        ).encode(),
    ),
    "manifest_not_parquet": ("manifest.parquet", lambda d: b"PAR1 this is not a parquet file"),
    "manifest_truncated": (
        "manifest.parquet",
        lambda d: (version_dir(d) / "manifest.parquet").read_bytes()[:-200],
    ),
    "manifest_no_case_id": (
        "manifest.parquet",
        lambda d: _table_bytes(_manifest(d).drop_columns(["case_id"])),
    ),
    "manifest_duplicate_case": (
        "manifest.parquet",
        lambda d: _table_bytes(pa.concat_tables([_manifest(d), _manifest(d).slice(0, 1)])),
    ),
    "manifest_bad_shape": (
        "manifest.parquet",
        lambda d: _table_bytes(
            _manifest(d).set_column(
                _manifest(d).column_names.index("shape_zyx"),
                "shape_zyx",
                pa.array([[0, 1]] * _manifest(d).num_rows, type=pa.list_(pa.int64())),
            )
        ),
    ),
    "manifest_missing": ("manifest.parquet", None),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_malformed_metadata_gives_a_clear_format_error(name: str, dataset: Path) -> None:
    target, make = BREAKAGES[name]
    path = dataset / target if target == "LATEST.json" else version_dir(dataset) / target
    if make is None:
        path.unlink()
    else:
        path.write_bytes(make(dataset))
    with pytest.raises(FormatError) as info:
        open_dataset(str(dataset))
    message = str(info.value)
    assert target in message or "versions/0" in message, message
    assert "Traceback" not in message


def test_the_intact_copy_opens(dataset: Path) -> None:
    assert len(open_dataset(str(dataset))) == 3
    assert REPO.exists()

"""The same build on the GCS and S3 emulators and on a Dask cluster gives the same dataset as locally."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import IN_PROCESS, Cohort, build, case_arrays, read_table, version_dir

from hcc_shards import storage
from pipelines.beam import runners


@pytest.fixture(scope="module")
def reference(small_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory):
    """Local input, local output, in this process: what every other backend must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "out"
    summary = build(small_cohort.root, str(out), *IN_PROCESS)
    return version_dir(out), summary


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    """A dask.distributed LocalCluster of two worker processes, closed after the module."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(runners.dask_worker_config()):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _upload(local_root: str, url: str, options: dict[str, Any]) -> int:
    fs, path = storage.filesystem(url, options)
    # A few uploads at a time: gcp-storage-emulator resets connections under fsspec's default
    # concurrency, and gcsfs's retries with back-off then take minutes.
    fs.put(local_root.rstrip("/") + "/", path, recursive=True, batch_size=4)
    fs.invalidate_cache()
    return len(fs.find(path))


def _remote_table(url: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    fs, path = storage.filesystem(url, options)
    with fs.open(path, "rb") as f:
        return pq.read_table(f).to_pylist()


def _assert_same_dataset(
    reference_version: Path,
    version_url: str,
    options: dict[str, Any],
    input_root: str,
    local_input_root: str,
) -> None:
    ref_rows = read_table(reference_version / "manifest.parquet")
    rows = _remote_table(storage.join(version_url, "manifest.parquet"), options)
    assert rows == ref_rows, "manifests differ"
    assert ref_rows, "the reference build has no case"
    for row in ref_rows:
        want = case_arrays(reference_version, row)
        got = case_arrays(version_url, row, options)
        assert sorted(got) == sorted(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{row['case_id']} {name}")
    ref_q = read_table(reference_version / "quarantine.parquet")
    got_q = _remote_table(storage.join(version_url, "quarantine.parquet"), options)
    relative = [
        (os.path.relpath(r["url"], local_input_root), r["code"], r["patient_id"], r["sop_instance_uid"])
        for r in ref_q
    ]
    assert [
        (r["url"][len(input_root) + 1 :], r["code"], r["patient_id"], r["sop_instance_uid"]) for r in got_q
    ] == (relative)
    fs, path = storage.filesystem(storage.join(version_url, "dataset.json"), options)
    stored = json.loads(fs.cat_file(path))
    assert stored["counts"] == json.loads((reference_version / "dataset.json").read_text())["counts"]


@pytest.mark.parametrize("backend", ["gcs", "s3"])
def test_object_storage_build_matches_local(
    backend: str, request: pytest.FixtureRequest, small_cohort: Cohort, reference
) -> None:
    emulator = request.getfixturevalue(backend)
    options = emulator.storage_options
    bucket = emulator.make_bucket("hcc-build")
    input_url = storage.join(bucket, "dicom")
    output_url = storage.join(bucket, "dataset")
    files = _upload(small_cohort.root, input_url, options)
    assert files == sum(len(f) for _, _, f in os.walk(small_cohort.root))

    summary = build(input_url, output_url, *IN_PROCESS, f"--storage_options={json.dumps(options)}")
    reference_version, ref_summary = reference
    assert summary.version_url == storage.join(output_url, "versions", ref_summary.config_hash)
    assert (summary.cases_written, summary.files) == (ref_summary.cases_written, ref_summary.files)
    _assert_same_dataset(reference_version, summary.version_url, options, input_url, small_cohort.root)


def test_gcs_input_to_local_output_with_separate_options(
    gcs, small_cohort: Cohort, reference, tmp_path
) -> None:
    """Input and output may live on different filesystems, each with its own storage options."""
    bucket = gcs.make_bucket("hcc-build-mixed")
    input_url = storage.join(bucket, "dicom")
    _upload(small_cohort.root, input_url, gcs.storage_options)
    out = tmp_path / "out"
    summary = build(
        input_url, str(out), *IN_PROCESS, f"--input_storage_options={json.dumps(gcs.storage_options)}"
    )
    reference_version, ref_summary = reference
    assert summary.config_hash == ref_summary.config_hash
    _assert_same_dataset(reference_version, summary.version_url, {}, input_url, small_cohort.root)


@pytest.mark.slow
def test_dask_local_cluster_build_matches_direct_runner(
    dask_scheduler: str, small_cohort: Cohort, reference, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = build(
        small_cohort.root,
        str(out),
        "--runner=DaskRunner",
        f"--dask_client_address={dask_scheduler}",
        "--listing_shards=4",
    )
    reference_version, ref_summary = reference
    assert (summary.cases_written, summary.quarantined) == (
        ref_summary.cases_written,
        ref_summary.quarantined,
    )
    _assert_same_dataset(reference_version, summary.version_url, {}, small_cohort.root, small_cohort.root)
    # A rerun on Dask resumes every case and leaves the committed version alone.
    again = build(
        small_cohort.root,
        str(out),
        "--runner=DaskRunner",
        f"--dask_client_address={dask_scheduler}",
        "--listing_shards=4",
    )
    assert (again.cases_written, again.cases_resumed, again.committed) == (
        0,
        ref_summary.cases_written,
        False,
    )


@pytest.mark.slow
def test_spark_local_build_matches_direct_runner(small_cohort: Cohort, reference, tmp_path: Path) -> None:
    """The native Spark driver on a real local[2] Spark gives the Beam build's dataset, row for row."""
    out = tmp_path / "out"
    summary = build(
        small_cohort.root, str(out), "--engine=spark", "--spark_master=local[2]", "--listing_shards=4"
    )
    reference_version, ref_summary = reference
    assert (summary.cases_written, summary.quarantined, summary.files) == (
        ref_summary.cases_written,
        ref_summary.quarantined,
        ref_summary.files,
    )
    _assert_same_dataset(reference_version, summary.version_url, {}, small_cohort.root, small_cohort.root)
    rerun = build(
        small_cohort.root, str(out), "--engine=spark", "--spark_master=local[2]", "--listing_shards=4"
    )
    assert (rerun.cases_written, rerun.cases_resumed, rerun.committed) == (0, summary.cases_written, False)


def test_stages_in_process_match_direct_runner(small_cohort: Cohort, reference, tmp_path: Path) -> None:
    """The stages driven by plain Python, with no engine at all, give the same dataset."""
    from hcc_shards.build.local import run_local
    from hcc_shards.build.plan import BuildPlan, flag_values

    out = tmp_path / "out"
    summary = run_local(
        BuildPlan.from_flags(flag_values(input=small_cohort.root, output=str(out))), workers=2
    )
    reference_version, ref_summary = reference
    assert (summary.cases_written, summary.quarantined) == (
        ref_summary.cases_written,
        ref_summary.quarantined,
    )
    _assert_same_dataset(reference_version, summary.version_url, {}, small_cohort.root, small_cohort.root)


@pytest.mark.slow
def test_spark_submit_entry_point(small_cohort: Cohort, reference, tmp_path: Path) -> None:
    """``spark-submit pipelines/spark/submit.py`` (pyspark's own launcher, a separate driver process)."""
    import subprocess
    import sys

    import pyspark

    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "out"
    done = subprocess.run(
        [
            str(submit),
            "--master",
            "local[2]",
            str(repo / "pipelines" / "spark" / "submit.py"),
            f"--input={small_cohort.root}",
            f"--output={out}",
            "--listing_shards=4",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dataset version" in done.stdout
    reference_version, _ = reference
    _assert_same_dataset(reference_version, str(version_dir(out)), {}, small_cohort.root, small_cohort.root)

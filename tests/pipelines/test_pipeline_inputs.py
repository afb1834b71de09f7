"""INPUT as several prefixes or an @list file: parsing, listing, the commands, and one build from a list."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from pipeline_helpers import IN_PROCESS, Cohort, read_table, version_dir

from hcc_shards import storage
from hcc_shards.build import listing as build_listing
from hcc_shards.build.inputs import parse_input_list, resolve_inputs
from hcc_shards.build.plan import BuildPlan
from hcc_shards.config import BuildConfig
from hcc_shards.errors import ConfigError
from hcc_shards.synth.layout import crdc_uuid
from pipelines.beam.options import HccShardsOptions

REPO = Path(__file__).resolve().parents[2]

LIST_TEXT = """# HCC-TACE-Seg, selected with idc-index
s3://idc-open-data/0a1b/*
s3://idc-open-data/0a1b/        # the same series again

  s3://idc-open-data/ffee/*\r
s3://idc-open-data/0a1b/0001.dcm
s3://idc-open-data/9c9c
"""


def _all_files(tasks: list[build_listing.ListingTask], options: dict) -> list[str]:
    return [r.url for t in tasks for r in build_listing.list_files(t, options)]


def _plan(input_spec: str, shards: int = 4, options: dict | None = None) -> BuildPlan:
    return BuildPlan(
        input_spec,
        "memory://elsewhere/out",
        BuildConfig(),
        input_storage_options=options or {},
        listing_shards=shards,
    )


def test_list_file_lines_comments_wildcards_and_duplicates() -> None:
    assert parse_input_list(LIST_TEXT, "list.txt") == [
        "s3://idc-open-data/0a1b",
        "s3://idc-open-data/0a1b",
        "s3://idc-open-data/ffee",
        "s3://idc-open-data/0a1b/0001.dcm",
        "s3://idc-open-data/9c9c",
    ]
    with pytest.raises(ConfigError, match=r"list.txt line 2: 'gs://b/\*/x.dcm' has a wildcard"):
        parse_input_list("gs://b/a\ngs://b/*/x.dcm\n", "list.txt")
    with pytest.raises(ConfigError, match="a list file cannot name another list"):
        parse_input_list("@other.txt\n", "list.txt")


def test_local_list_file_comma_list_and_repeated_flag_resolve_alike(tmp_path: Path) -> None:
    for name in ("b", "a", "a/s1", "c"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "s1" / "x.dcm").write_bytes(b"x")
    (tmp_path / "c" / "y.dcm").write_bytes(b"y")
    listing = tmp_path / "series.txt"
    listing.write_text(f"# local series\n{tmp_path}/b/*\n\n{tmp_path}/a/s1/x.dcm\n{tmp_path}/a/\n")
    expected = (f"{tmp_path}/a", f"{tmp_path}/b", f"{tmp_path}/c/y.dcm")
    assert resolve_inputs(f"@{listing},{tmp_path}/c/y.dcm,{tmp_path}/b") == expected
    # --input repeated is the same as commas; INPUT stays one string (template parameters, Dataflow).
    options = PipelineOptions([f"--input=@{listing}", f"--input={tmp_path}/c/y.dcm", "--output=/o"])
    assert options.view_as(HccShardsOptions).input == f"@{listing},{tmp_path}/c/y.dcm"
    assert resolve_inputs(options.view_as(HccShardsOptions).input) == expected

    with pytest.raises(ConfigError, match=r"input '.*/nope' does not exist"):
        resolve_inputs(f"{tmp_path}/a,{tmp_path}/nope")
    with pytest.raises(ConfigError, match="mixes storage protocols"):
        resolve_inputs(f"{tmp_path}/a,gs://bucket/series")
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match="names no prefix"):
        resolve_inputs(f"@{tmp_path}/empty.txt")
    with pytest.raises(ConfigError, match="cannot read the input list"):
        resolve_inputs(f"@{tmp_path}/missing.txt")
    with pytest.raises(ConfigError, match="must differ from input"):
        BuildPlan(f"{tmp_path}/a,{tmp_path}/b/", f"{tmp_path}/b", BuildConfig())


@pytest.mark.parametrize("shards", [2, 16])
def test_memory_list_every_object_listed_once_and_typos_named(shards: int) -> None:
    base = f"memory://inputs-{uuid.uuid4().hex[:8]}"
    fs, root = storage.filesystem(base)
    series = [f"{i:04x}" for i in range(6)]
    names = [f"{s}/{j}.dcm" for s in series for j in range(3)] + ["other-collection/z.dcm"]
    for n in names:
        fs.pipe_file(f"{root}/{n}", n.encode())
    fs.pipe_file(f"{root}/lists/series.txt", "\n".join(f"{base}/{s}/*" for s in series).encode())
    plan = _plan(f"@{base}/lists/series.txt", shards)
    tasks = build_listing.listing_tasks(plan)
    assert len(tasks) == shards and len({t.shard for t in tasks}) == shards
    # 6 series and 2 tasks: each task lists its series whole; 16 tasks: each takes a hash share.
    assert all(not t.split for t in tasks) if shards == 2 else all(t.split for t in tasks)
    found = _all_files(tasks, {})
    want = [storage.unstrip(fs, f"{root}/{n}") for n in names if not n.startswith("other")]
    assert sorted(found) == sorted(want) and len(found) == len(want)  # nothing outside the list

    typo = _plan(f"@{base}/lists/series.txt,{base}/no-such-series", shards)
    with pytest.raises(FileNotFoundError, match="no-such-series' does not exist"):
        _all_files(build_listing.listing_tasks(typo), {})


def test_list_file_and_series_on_the_s3_emulator(
    s3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3.make_bucket(f"idc-{uuid.uuid4().hex[:8]}")
    fs, _ = storage.filesystem(bucket, s3.storage_options)
    series = ["1111", "2222", "3333"]
    for s in [*series, "4444"]:
        for j in range(2):
            fs.pipe_file(f"{bucket}/{s}/{j}.dcm", b"dicom")
    listing = "# made by idc-index\n" + "".join(f"{bucket}/{s}/*\n" for s in series) + f"{bucket}/1111\n"
    fs.pipe_file(f"{bucket}/lists/hcc.txt", listing.encode())
    fs.invalidate_cache()
    plan = _plan(f"@{bucket}/lists/hcc.txt", 2, s3.storage_options)
    assert resolve_inputs(plan.input_url, s3.storage_options) == tuple(f"{bucket}/{s}" for s in series)
    found = _all_files(build_listing.listing_tasks(plan), s3.storage_options)
    assert sorted(found) == [f"{bucket}/{s}/{j}.dcm" for s in series for j in range(2)]
    typo = _plan(f"@{bucket}/lists/hcc.txt,{bucket}/5555", 2, s3.storage_options)
    with pytest.raises(FileNotFoundError, match="5555' does not exist"):
        _all_files(build_listing.listing_tasks(typo), s3.storage_options)
    # The command names the typo and stops before any work (exit 3, missing INPUT): nothing is written.
    from hcc_shards.cli import main

    argv = ["build", f"@{bucket}/lists/hcc.txt", f"{bucket}/5555", str(tmp_path / "out"), "--quiet"]
    argv += ["--storage-options", json.dumps(s3.storage_options), *IN_PROCESS]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"INPUT {bucket}/5555 does not exist" in err, err[-2000:]
    assert not (tmp_path / "out").exists()


def test_build_command_joins_several_inputs() -> None:
    from hcc_shards.cli import build_parser
    from hcc_shards.commands.build import beam_argv

    argv = ["build", "gs://b/s1", "gs://b/s2,gs://b/s3", "gs://out/ds", "--limit", "2", "--runner=X"]
    args = build_parser(argv).parse_args(argv)
    assert beam_argv(args) == [
        "--input=gs://b/s1,gs://b/s2,gs://b/s3",
        "--output=gs://out/ds",
        "--limit=2",
        "--runner=X",
    ]


def test_build_from_a_list_of_idc_series_yields_exactly_their_cases(
    idc_cohort: Cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hcc_shards.cli import main

    chosen = [
        p for p in idc_cohort.truth.patients if p.expected_case and p.quirk in ("none", "stacked_phases")
    ]
    assert len(chosen) == 3
    root = idc_cohort.root
    lines = ["# three patients of the synthetic cohort, as idc-index would list them", ""]
    for p in chosen:
        ct, seg = crdc_uuid(p.ct_series_instance_uid), crdc_uuid(p.seg_series_instance_uid)
        lines += [f"{root}/{seg}/*", f"{root}/{ct}/", f"{root}/{ct}  # again"]
    first_ct = sorted((Path(root) / crdc_uuid(chosen[0].ct_series_instance_uid)).iterdir())[0]
    lines.append(str(first_ct))  # an object inside a listed series: listed once
    listing = tmp_path / "series.txt"
    listing.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = main(["build", f"@{listing}", str(out), "--quiet", "--listing-shards", "2", *IN_PROCESS])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    rows = read_table(version_dir(out) / "manifest.parquet")
    got = sorted((r["patient_id"], r["seg_sop_instance_uid"], r["ct_series_instance_uid"]) for r in rows)
    assert got == sorted((p.patient_id, p.seg_sop_instance_uid, p.ct_series_instance_uid) for p in chosen)
    listed = {crdc_uuid(p.ct_series_instance_uid) for p in chosen} | {
        crdc_uuid(p.seg_series_instance_uid) for p in chosen
    }
    expected_records = sorted(code for path, code in idc_cohort.extra.items() if path.split("/")[0] in listed)
    records = read_table(version_dir(out) / "quarantine.parquet")
    assert sorted(r["code"] for r in records) == expected_records
    files = sum(p.files for p in chosen) - sum(
        s.instances for p in chosen for s in p.series if s.series_instance_uid != p.ct_series_instance_uid
    )
    summary = json.loads((version_dir(out) / "dataset.json").read_text())["summary"]
    assert summary["files"] == files + len(expected_records)


# ---------------------------------------------------------------------------------------------
# deploy/: the template parameter and the launch script accept the new forms
# ---------------------------------------------------------------------------------------------


def test_template_input_parameter_accepts_lists() -> None:
    metadata = json.loads((REPO / "deploy" / "metadata.json").read_text())
    [param] = [p for p in metadata["parameters"] if p["name"] == "input"]
    regexes = [re.compile(r) for r in param["regexes"]]
    good = [
        "gs://idc-open-data/0a1b-2c3d",
        "gs://mirror/hcc-tace-seg/",
        "gs://idc-open-data/0a1b/*,gs://idc-open-data/ffee/*",
        "@gs://p-hcc-shards-staging/inputs/hcc_tace_seg.txt",
        "@gs://lists/l1.txt,gs://idc-open-data/0a1b",
    ]
    bad = ["@/home/me/series.txt", "gs://bk/x,/local", "gs://bk/x,,", "@", "s3://idc-open-data/0a1b"]
    for value in good:
        assert all(r.search(value) for r in regexes), f"{value!r} should be accepted"
    for value in bad:
        assert not all(r.search(value) for r in regexes), f"{value!r} should be rejected"


def _launch(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HCC_PROJECT": "p",
        "HCC_REGION": "us-central1",
        "HCC_IMAGE": "us-central1-docker.pkg.dev/p/r/hcc-shards:1",
        "HCC_TEMPLATE": "gs://p-staging/templates/t.json",
        "HCC_TEMP_LOCATION": "gs://p-temp/temp",
        "HCC_STAGING_LOCATION": "gs://p-staging/staging",
        "HCC_SERVICE_ACCOUNT": "w@p.iam.gserviceaccount.com",
        "HCC_SUBNETWORK": "regions/us-central1/subnetworks/s",
        "HCC_JOB_NAME": "j",
    }
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "launch.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _printed(proc: subprocess.CompletedProcess[str]) -> list[str]:
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("+ ")]
    return shlex.split(line[2:])


def test_launch_script_passes_lists_through(tmp_path: Path) -> None:
    proc = _launch("run", "@gs://p-staging/inputs/hcc.txt", "gs://out/ds", "limit=5")
    assert proc.returncode == 0, proc.stderr
    assert "--parameters=^~^input=@gs://p-staging/inputs/hcc.txt~output=gs://out/ds" in " ".join(
        _printed(proc)
    )
    proc = _launch("run", "gs://idc-open-data/a/*,gs://idc-open-data/b/*", "gs://out/ds")
    assert proc.returncode == 0, proc.stderr
    assert "^~^input=gs://idc-open-data/a/*,gs://idc-open-data/b/*~" in " ".join(_printed(proc))
    # The template's launcher cannot read a file on this machine; the direct form can.
    proc = _launch("run", f"@{tmp_path}/hcc.txt", "gs://out/ds")
    assert proc.returncode == 2 and "a list file on gs://" in proc.stderr
    (tmp_path / "hcc.txt").write_text("gs://idc-open-data/a/*\n")
    proc = _launch("direct", f"@{tmp_path}/hcc.txt", "gs://out/ds")
    assert proc.returncode == 0, proc.stderr
    assert f"--input=@{tmp_path}/hcc.txt" in _printed(proc)
    proc = _launch("direct", f"@{tmp_path}/missing.txt", "gs://out/ds")
    assert proc.returncode == 2 and "missing.txt" in proc.stderr

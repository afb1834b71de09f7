"""Plain functions of the pipeline (no runner), option parsing, runner defaults, and one transform on lists."""

from __future__ import annotations

import json
import uuid

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from hcc_shards import storage
from hcc_shards.build import commit, index, listing, target
from hcc_shards.build.flags import PSEUDONYMIZE_KEY_ENV
from hcc_shards.build.plan import BuildPlan, parse_label_map, parse_spacing
from hcc_shards.config import BuildConfig
from hcc_shards.errors import ConfigError
from hcc_shards.labels import AORTA, TUMOR
from pipelines.beam import labels, runners
from pipelines.beam.options import plan_of
from pipelines.beam.transforms import Spread


def _plan(*argv: str) -> BuildPlan:
    return plan_of(PipelineOptions(["--input=memory://in", "--output=memory://out", *argv]))


def test_listing_tasks_partition_every_object_once() -> None:
    root = f"memory://listing-{uuid.uuid4().hex[:8]}"
    fs, base = storage.filesystem(root)
    names = [f"P{p:02d}/s{s}/{i}.dcm" for p in range(12) for s in range(2) for i in range(3)] + ["top.txt"]
    for n in names:
        fs.pipe_file(f"{base}/{n}", n.encode())
    plan = BuildPlan(input_url=root, output_url="memory://elsewhere", config=BuildConfig(), listing_shards=5)
    per_task = [listing.list_files(t, {}) for t in listing.listing_tasks(plan)]
    found = [r for refs in per_task for r in refs]
    assert sorted(r.url for r in found) == sorted(storage.unstrip(fs, f"{base}/{n}") for n in names)
    assert len({r.url for r in found}) == len(found), "an object was listed by two tasks"
    assert sum(1 for refs in per_task if refs) >= 3, "the listing did not spread over the tasks"
    assert {r.url: r.size for r in found}[storage.unstrip(fs, f"{base}/top.txt")] == len("top.txt")


@pytest.mark.parametrize("wrapper", ["", "manifest-1/HCC-TACE-Seg/", "a/b/c/d/"])
def test_listing_inside_wrapper_folders_still_spreads(wrapper: str) -> None:
    # A collection inside one or two wrapper folders (a TCIA download) is shared out below them;
    # four levels down is past the descent limit, and one task lists it all (still exactly once).
    root = f"memory://wrapped-{uuid.uuid4().hex[:8]}"
    fs, base = storage.filesystem(root)
    names = [f"{wrapper}HCC_{p:03d}/s{s}/{i}.dcm" for p in range(20) for s in range(2) for i in range(2)]
    names.append(f"{wrapper}metadata.csv")
    for n in names:
        fs.pipe_file(f"{base}/{n}", n.encode())
    plan = BuildPlan(input_url=root, output_url="memory://elsewhere", config=BuildConfig(), listing_shards=8)
    per_task = [listing.list_files(t, {}) for t in listing.listing_tasks(plan)]
    found = [r.url for refs in per_task for r in refs]
    assert sorted(found) == sorted(storage.unstrip(fs, f"{base}/{n}") for n in names)
    busy = sum(1 for refs in per_task if refs)
    assert busy >= (1 if wrapper == "a/b/c/d/" else 5), busy


def test_single_file_input_is_listed_once(tmp_path) -> None:
    f = tmp_path / "one.dcm"
    f.write_bytes(b"x")
    tasks = listing.listing_tasks(BuildPlan(str(f), str(tmp_path / "out"), BuildConfig(), listing_shards=3))
    assert [r.url for t in tasks for r in listing.list_files(t, {})] == [str(f)]


def test_plan_from_options_reads_our_flags(tmp_path, monkeypatch) -> None:
    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps({"codes": {"SCT:272673000": "tumor"}, "synonyms": {"Bone": 4}}))
    opts = json.dumps({"endpoint_url": "http://127.0.0.1:1"})
    plan = _plan(
        "--spacing=2.5,0.8,0.8",
        "--seed=7",
        "--limit=3",
        f"--storage_options={opts}",
        '--output_storage_options={"token": "anon"}',
        f"--label_map={label_map}",
    )
    assert plan.config.target_spacing == (2.5, 0.8, 0.8) and plan.config.seed == 7 and plan.limit == 3
    assert plan.input_storage_options == {"endpoint_url": "http://127.0.0.1:1"}
    assert plan.output_storage_options == {"endpoint_url": "http://127.0.0.1:1", "token": "anon"}
    assert dict(plan.config.segment_codes)["SCT:272673000"] == TUMOR
    assert dict(plan.config.segment_synonyms)["bone"] == AORTA
    monkeypatch.delenv(PSEUDONYMIZE_KEY_ENV, raising=False)
    plain = _plan()
    assert plain.config.target_spacing is None and not plain.config.pseudonymize_key  # auto, no key
    monkeypatch.setenv(PSEUDONYMIZE_KEY_ENV, "secret-key")
    keyed = _plan("--pseudonymize")
    assert keyed.config.pseudonymize_key == "secret-key" and "secret-key" not in repr(keyed)
    assert keyed.config.config_hash() != plain.config.config_hash()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--spacing=1,2"], "three positive mm values"),
        (["--spacing=1,0,1"], "three positive mm values"),
        (["--storage_options=[1]"], "--storage_options must be a JSON object"),
        (["--storage_options={bad"], "--storage_options must be a JSON object"),
        (["--limit=-1"], "--limit must be >= 0"),
        (["--listing_shards=0"], "--listing_shards must be >= 1"),
        (["--pseudonymize"], "HCC_SHARDS_PSEUDONYMIZE_KEY"),
    ],
)
def test_bad_flags_name_the_flag_and_the_value(argv, message, monkeypatch) -> None:
    monkeypatch.delenv(PSEUDONYMIZE_KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=message):
        _plan(*argv)


def test_same_input_and_output_is_refused() -> None:
    with pytest.raises(ConfigError, match="must differ from input"):
        BuildPlan("gs://b/x", "gs://b/x/", BuildConfig())


def test_label_map_errors() -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        parse_label_map({"synonyms": {"mass": "tumour"}}, BuildConfig())
    with pytest.raises(ConfigError, match="SCHEME:value"):
        parse_label_map({"codes": {"4147007": "tumor"}}, BuildConfig())
    with pytest.raises(ConfigError, match="unknown sections"):
        parse_label_map({"segments": {}}, BuildConfig())
    assert parse_spacing("auto") is None and parse_spacing(" 3, 1 ,1") == (3.0, 1.0, 1.0)


def test_runner_defaults() -> None:
    direct = runners.with_runner_defaults([])
    assert "--direct_num_workers=0" in direct and "--direct_running_mode=multi_processing" in direct
    kept = runners.with_runner_defaults(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    assert kept == ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    dask = runners.with_runner_defaults(["--runner=DaskRunner", "--dask_client_address=tcp://h:1"])
    assert "--dask_partition_size=1" in dask and "--target_join=grouped" in dask
    assert "--spread_inputs=false" in dask and "--spread_inputs=false" not in direct
    assert runners.with_runner_defaults(["--runner=dataflow"]) == ["--runner=dataflow"]
    assert runners.runner_name(PipelineOptions(["--runner=portable"])) == "PortableRunner"
    with pytest.raises(ValueError, match="not supported"):
        runners.runner_name(PipelineOptions(["--runner=NoSuchRunner"]))
    assert isinstance(runners.make_runner(PipelineOptions([])), runners.LocalDirectRunner)


def test_summary_round_trip_and_attach_target() -> None:
    s = commit.Summary(
        version_url="memory://o/versions/abc",
        config_hash="abc",
        cases_total=3,
        cases_written=2,
        cases_resumed=1,
        quarantined=1,
        quarantined_by_reason=(("not_dicom", 1),),
        files=10,
        bytes_read=100,
        bytes_written=50,
        wall_seconds=1.5,
        cases_per_minute=120.0,
        committed=True,
        target_spacing_zyx=(1.0, 2.0, 3.0),
    )
    assert commit.Summary.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    resolved = target.BuildTarget(BuildConfig(), "memory://o/versions/x", 2)
    assert target.attach_target(["a", resolved, "b"]) == [("a", resolved), ("b", resolved)]
    with pytest.raises(ValueError, match="exactly one BuildTarget"):
        target.attach_target(["a"])
    assert index.add_index_stats([index.IndexStats(1, 1, 5), index.IndexStats(2, 0, 0)]) == index.IndexStats(
        3, 1, 5
    )


def test_spread_keeps_every_element() -> None:
    items = [f"gs://b/{i}.dcm" for i in range(20)] + ["gs://b/0.dcm"]
    with BeamTestPipeline(
        options=PipelineOptions(["--direct_running_mode=in_memory"]), runner=runners.LocalDirectRunner()
    ) as p:
        out = p | beam.Create(items) | Spread(key=lambda u: u)
        assert_that(out, equal_to(items))


def test_input_without_dicom_commits_only_its_quarantine(tmp_path) -> None:
    from pipeline_helpers import IN_PROCESS, build, read_table, version_dir

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")
    from hcc_shards.errors import EmptyBuildError, InputMissingError

    with pytest.raises(EmptyBuildError, match="no case to write"):  # by default nothing is committed
        build(str(tmp_path / "in"), str(tmp_path / "out"), *IN_PROCESS)
    assert not (tmp_path / "out" / "LATEST.json").exists()
    summary = build(str(tmp_path / "in"), str(tmp_path / "out"), *IN_PROCESS, "--allow_empty")
    assert (summary.cases_total, summary.quarantined, summary.files) == (0, 1, 1)
    version = version_dir(tmp_path / "out")
    assert read_table(version / "manifest.parquet") == []
    assert [r["code"] for r in read_table(version / "quarantine.parquet")] == ["not_dicom"]
    with pytest.raises(InputMissingError, match="does not exist"):
        build(str(tmp_path / "missing"), str(tmp_path / "out2"), *IN_PROCESS)


class _Applied:
    def __init__(self, full_label: str) -> None:
        self.full_label = full_label


def _dask_group(label: str, bound: int = 4):
    return runners.fewer_partitions_group_by_key(bound, labels.group_kind)(_Applied(label))


def test_dask_group_by_key_merges_partitions_first() -> None:
    import dask.bag as db

    op = _dask_group("Pair/Group by patient/GroupByKey")
    items = [(k % 3, k) for k in range(30)]
    grouped = op.apply(db.from_sequence(items, npartitions=30))
    assert grouped.npartitions == 4
    got = {k: sorted(v) for k, v in grouped.compute(scheduler="sync")}
    assert got == {r: [k for k in range(30) if k % 3 == r] for r in range(3)}
    # Fewer partitions than the bound: left as they are.
    assert op.apply(db.from_sequence(items, npartitions=2)).npartitions == 2


def test_dask_one_key_groups_use_one_partition() -> None:
    import dask.bag as db

    op = _dask_group("Commit/All outcomes/All outcomes/CombinePerKey/GroupByKey/GroupByKey")
    grouped = op.apply(db.from_sequence([(None, k) for k in range(20)], npartitions=7))
    assert grouped.npartitions == 1
    assert [(k, sorted(v)) for k, v in grouped.compute(scheduler="sync")] == [(None, list(range(20)))]


def test_dask_spread_deals_elements_out_evenly() -> None:
    # 48 cases arriving in one partition (after the one-key target join) leave in 16 equal ones,
    # each element in a group of its own: what the ungrouping after it needs.
    import dask
    import dask.bag as db

    op = _dask_group(f"Build cases/Spread cases/{labels.SPREAD_GROUP}/GroupByKey", bound=16)
    items = [(f"uid-{k}", k) for k in range(48)]
    spread = op.apply(db.from_sequence(items, npartitions=1))
    parts = dask.compute(*spread.to_delayed(), scheduler="sync")
    assert [len(p) for p in parts] == [3] * 16
    assert sorted((k, v) for part in parts for k, v in part) == sorted((k, [v]) for k, v in items)
    # Uneven partitions (files as the listing tasks found them) are evened out too.
    uneven = db.concat(
        [db.from_sequence(items[:40], npartitions=1), db.from_sequence(items[40:], npartitions=15)]
    )
    parts = dask.compute(*op.apply(uneven).to_delayed(), scheduler="sync")
    assert [len(p) for p in parts] == [3] * 16


def test_group_kinds_of_the_build_graph() -> None:
    assert labels.group_kind("Pair/Group by patient/GroupByKey") == labels.SHUFFLE
    assert labels.group_kind("Sum index stats/CombinePerKey/GroupByKey/GroupByKey") == labels.ONE_KEY
    assert labels.group_kind("Build cases/Group with target/GroupByKey") == labels.ONE_KEY
    assert labels.group_kind(f"Index headers/Spread files/{labels.SPREAD_GROUP}/GroupByKey") == labels.SPREAD


def test_dask_worker_config_sets_the_malloc_thresholds() -> None:
    environ = "distributed.nanny.pre-spawn-environ."
    config = runners.dask_worker_config()
    assert config == {
        f"{environ}MALLOC_TRIM_THRESHOLD_": 268435456,
        f"{environ}MALLOC_MMAP_THRESHOLD_": 268435456,
    }

"""idc:// resolves a collection through the IDC index, offline: counts, prefixes, filters, errors."""

from __future__ import annotations

import re

import pytest
from idc_helpers import needs_idc_index

from hcc_shards import idc
from hcc_shards.build.inputs import input_entries, resolve_inputs
from hcc_shards.errors import ConfigError
from pipelines.beam.options import HccShardsOptions, plan_of

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_hcc_tace_seg_resolves_to_1020_series_and_448_segs_with_the_index_prefixes(index_path) -> None:
    sel = idc.resolve("idc://hcc_tace_seg", index_path)
    t = sel.totals()
    assert (t["patients"], t["studies"], t["series"], t["segs"], t["instances"]) == (
        105,
        211,
        1020,
        448,
        52311,
    )
    assert t["segs_by_analysis_result"] == {"bamf_aimi_annotations": 343, "original": 105}
    assert round(t["bytes"] / 1e9, 1) == 29.8
    prefixes = sel.prefixes()
    assert len(set(prefixes)) == 1020
    assert all(re.fullmatch(rf"s3://idc-open-data/{UUID}", p) for p in prefixes)
    assert {p.rsplit("/", 1)[1] for p in prefixes} == {s.crdc_series_uuid for s in sel.series}
    gs = idc.resolve("idc://hcc_tace_seg?protocol=gs", index_path).prefixes()
    assert [p.replace("gs://", "s3://", 1) for p in gs] == list(prefixes)
    # The annotation-source rule gets each AI SEG's analysis result; manual SEGs and CTs are absent.
    results = dict(sel.analysis_results)
    assert len(results) == 343 and set(results.values()) == {"bamf_aimi_annotations"}
    assert all(s.modality == "SEG" for s in sel.series if s.series_instance_uid in results)


def test_filters_patients_modalities_and_analysis_results(index_path) -> None:
    base = "idc://hcc_tace_seg?patients=HCC_001,HCC_002"
    both = idc.resolve(base, index_path)
    assert {s.patient_id for s in both.series} == {"HCC_001", "HCC_002"}
    original = idc.resolve(f"{base}&analysis=none", index_path)
    assert not original.analysis_results and original.totals()["segs"] == 2
    named = idc.resolve(f"{base}&analysis=bamf_aimi_annotations", index_path)
    assert named.series == both.series
    segs = idc.resolve("idc://hcc_tace_seg?patients=HCC_001+HCC_002&modalities=seg", index_path)
    assert {s.modality for s in segs.series} == {"SEG"} and len(segs.series) == both.totals()["segs"]
    repeated = idc.resolve("idc://hcc_tace_seg?patients=HCC_001&patients=HCC_002", index_path)
    assert repeated.series == both.series
    for url, message in [
        ("idc://hcc_tace_seg?patients=HCC_999", r"patients \['HCC_999'\] not in the collection"),
        ("idc://hcc_tace_seg?modalities=MR", r"modalities \['MR'\] not in the collection"),
        ("idc://hcc_tace_seg?analysis=other_result", r"analysis \['other_result'\] not in the collection"),
        ("idc://hcc_tace_seg?analysis=all,none", "analysis is 'all', 'none' or analysis result ids"),
        ("idc://hcc_tace_seg?colour=red", r"unknown query keys \['colour'\]"),
        ("idc://hcc_tace_seg?protocol=ftp", "protocol must be one of"),
        ("idc://", "expected idc://<collection_id>"),
        ("idc://no_such_collection", "IDC collection 'no_such_collection' is not in the index"),
    ]:
        with pytest.raises(ConfigError, match=message):
            idc.resolve(url, index_path)


def test_commas_in_an_idc_query_stay_in_the_entry() -> None:
    text = "idc://hcc_tace_seg?patients=HCC_001,HCC_002&modalities=CT,SEG,s3://b/x,@list.txt,idc://c"
    assert input_entries(text) == [
        "idc://hcc_tace_seg?patients=HCC_001,HCC_002&modalities=CT,SEG",
        "s3://b/x",
        "@list.txt",
        "idc://c",
    ]


def test_anonymous_access_unless_the_user_gives_credentials() -> None:
    assert idc.storage_options_for("s3", None) == {"anon": True}
    assert idc.storage_options_for("gs", {}) == {"token": "anon"}
    endpoint = {"endpoint_url": "http://127.0.0.1:9"}
    assert idc.storage_options_for("s3", endpoint) == {"anon": True, **endpoint}
    own = {"key": "k", "secret": "s"}
    assert idc.storage_options_for("s3", own) == own


@needs_idc_index
def test_build_plan_and_input_resolution_from_the_installed_index() -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    url = "idc://hcc_tace_seg?patients=HCC_001,HCC_002"
    roots = resolve_inputs(url)
    sel = idc.resolve(url)
    assert roots == tuple(sorted(sel.prefixes()))
    options = PipelineOptions([f"--input={url}", "--output=/tmp/never-written"])
    assert options.view_as(HccShardsOptions).input == url
    plan = plan_of(options)
    assert plan.input_storage_options == {"anon": True}
    ids = plan.config.analysis_result_ids
    assert ids == tuple(sorted(sel.analysis_results)) and ids
    seg_uid, result = ids[0]
    assert plan.config.analysis_result_id(seg_uid) == result and plan.config.analysis_result_id("1.2.3") == ""
    [record] = plan.input_index
    assert (
        record["series"] == 11 + len(sel.analysis_results)
        and record["idc_index_data"] == idc.index_version().package
    )
    assert record["idc_release"] == 25

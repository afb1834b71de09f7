"""The twin of hcc_tace_seg: real identifiers and counts in IDC's layout, dcmqi-style SEGs, and one
build from the S3 emulator through idc:// that gives the manifest of the local build."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pyarrow.parquet as pq
import pydicom
import pytest
from idc_helpers import needs_idc_index

from hcc_shards import idc
from hcc_shards.synth.twin import SOURCE_AI, SOURCE_MANUAL, TwinTruth, generate_twin, load_twin_truth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
from pipeline_helpers import IN_PROCESS, version_dir

PATIENTS = ("HCC_001", "HCC_002", "HCC_003")
SOURCE = f"idc://hcc_tace_seg?patients={','.join(PATIENTS)}"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory, index_path) -> tuple[Path, TwinTruth]:
    base = tmp_path_factory.mktemp("twin")
    truth = generate_twin(
        str(base / "dicom"),
        SOURCE,
        pixels=16,
        seed=3,
        truth_url=str(base / "truth.json"),
        index_path=index_path,
    )
    assert load_twin_truth(str(base / "truth.json")) == truth
    return base / "dicom", truth


def test_twin_has_every_series_of_the_index_with_its_identifiers_and_counts(twin, index_path) -> None:
    root, truth = twin
    selection = idc.resolve(SOURCE, index_path)
    assert truth.index == selection.record()
    by_uid = {s.series_instance_uid: s for s in selection.series}
    assert {s.series_instance_uid for s in truth.series} == set(by_uid)
    for s in truth.series:
        row = by_uid[s.series_instance_uid]
        assert s.instances == row.instance_count, s
        files = sorted((root / row.crdc_series_uuid).iterdir())
        assert len(files) == row.instance_count and all(re.fullmatch(rf"{UUID}\.dcm", f.name) for f in files)
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID) == (
            row.patient_id,
            row.study_instance_uid,
            row.series_instance_uid,
        )
        assert (int(ds.SeriesNumber), ds.get("SeriesDescription", "")) == (
            row.series_number,
            row.series_description,
        )
        assert ds.Modality == row.modality
    t = truth.totals()
    index = selection.totals()
    assert (t["series"], t["instances"], t["segs"]) == (index["series"], index["instances"], index["segs"])
    assert t["segs_by_source"][SOURCE_MANUAL] == len(PATIENTS)
    assert t["segs_by_source"][SOURCE_AI] == index["segs_by_analysis_result"]["bamf_aimi_annotations"]


def test_twin_segs_are_written_as_dcmqi_writes_them_on_their_ct_series(twin) -> None:
    root, truth = twin
    for seg in truth.segs:
        [path] = (root / seg.crdc_series_uuid).iterdir()
        ds = pydicom.dcmread(path)
        assert (ds.Manufacturer, int(ds.SeriesNumber)) == ("QIICR", 300)
        assert ds.SeriesDescription == seg.series_description
        assert ds["SegmentSequence"].is_undefined_length
        assert ds["PerFrameFunctionalGroupsSequence"].is_undefined_length
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == seg.ct_series_instance_uid
        labels = tuple(s.SegmentLabel for s in ds.SegmentSequence)
        kinds = {s.SegmentAlgorithmType for s in ds.SegmentSequence}
        if seg.expected_annotation_source == SOURCE_MANUAL:
            assert (
                labels == ("Liver", "Mass", "Portal vein", "Abdominal aorta") and not seg.analysis_result_id
            )
        else:
            assert labels == ("Liver", "Tumor") and seg.analysis_result_id == "bamf_aimi_annotations"
            assert kinds == (
                {"AUTOMATIC"} if seg.expected_annotation_source == SOURCE_AI else {"SEMIAUTOMATIC"}
            )
        frames = hd.seg.segread(path).pixel_array.reshape(int(ds.NumberOfFrames), -1)
        assert frames.any(axis=1).all()  # empty frames omitted
        assert labels == seg.segments and dict(seg.voxels)["liver"] > 0


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_twin_passes_dciodvfy(twin) -> None:
    root, _ = twin
    errors = {}
    for folder in sorted(root.iterdir()):
        first = sorted(folder.iterdir())[0]
        out = subprocess.run(["dciodvfy", str(first)], capture_output=True, text=True, check=False)
        found = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
        if found:
            errors[first.name] = found
    assert errors == {}


def _manifest(out: Path) -> list[tuple[str, str, str]]:
    rows = pq.read_table(version_dir(out) / "manifest.parquet").to_pylist()
    return [(r["case_id"], r["seg_sop_instance_uid"], r["checksum"]) for r in rows]


@needs_idc_index
def test_build_from_the_s3_emulator_through_idc_equals_the_local_build(
    twin, s3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hcc_shards.build.dryrun import plan_records
    from hcc_shards.cli import main
    from hcc_shards.storage import filesystem

    root, truth = twin
    referenced = {s.ct_series_instance_uid for s in truth.segs}
    # One CT series that no SEG references stays out of the mirror: the index names it anyway.
    [absent] = [s for s in truth.series if s.modality == "CT" and s.series_instance_uid not in referenced][:1]
    bucket = s3.make_bucket("idc-open-data")
    fs, _ = filesystem(bucket, s3.storage_options)
    uploads = {
        f"idc-open-data/{p.relative_to(root)}": p.read_bytes()
        for p in sorted(root.rglob("*.dcm"))
        if p.parent.name != absent.crdc_series_uuid
    }
    fs.pipe(uploads, ACL="public-read")  # as IDC's bucket: readable without credentials
    fs.invalidate_cache()
    # Anonymous, as IDC's public bucket: only the endpoint is given.
    endpoint = {"endpoint_url": s3.endpoint, "client_kwargs": {"region_name": "us-west-2"}}

    records = plan_records(SOURCE, storage_options=endpoint, workers=4)
    first = next(records)
    assert (
        first["kind"] == "index" and first["series"] == len(truth.series) and first["segs"] == len(truth.segs)
    )
    rest = list(records)
    assert not [r for r in rest if r["kind"] == "quarantine" and r["code"] == "storage_error"]
    assert rest[-1]["files"] == len(uploads)
    missing = [r for r in rest if r["kind"] == "quarantine" and r["code"] == "missing_objects"]
    assert [r["series_instance_uid"] for r in missing] == [absent.series_instance_uid]

    local, remote = tmp_path / "local", tmp_path / "remote"
    # The local build is told what the index tells the remote one (which SEG series are AI results):
    # the same configuration, so the same checksums.
    from hcc_shards.config import BuildConfig

    config = tmp_path / "config.json"
    ids = tuple(sorted(idc.resolve(SOURCE).analysis_results))
    config.write_text(json.dumps(BuildConfig(analysis_result_ids=ids).to_dict()))
    local_argv = ["build", str(root), str(local), "--quiet", "--listing-shards", "2", "--config", str(config)]
    assert main([*local_argv, *IN_PROCESS]) == 0
    argv = ["build", SOURCE, str(remote), "--quiet", "--listing-shards", "2", *IN_PROCESS]
    argv += ["--input-storage-options", json.dumps(endpoint)]
    code = main(argv)
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    assert f"INDEX {SOURCE}: 3 patients" in printed.err
    assert _manifest(remote) and _manifest(remote) == _manifest(local)
    sources = pq.read_table(version_dir(remote) / "manifest.parquet").column("annotation_source").to_pylist()
    assert sorted(sources) == sorted(s.expected_annotation_source for s in truth.segs)
    quarantine = pq.read_table(version_dir(remote) / "quarantine.parquet").to_pylist()
    assert [r["url"] for r in quarantine if r["code"] == "missing_objects"] == [
        f"s3://idc-open-data/{absent.crdc_series_uuid}"
    ]
    dataset = json.loads((version_dir(remote) / "dataset.json").read_text())
    [index] = dataset["summary"]["input_index"]
    assert index["idc_index_data"] == idc.index_version().package and index["series"] == len(truth.series)

"""Predictions written back into a built dataset: label images, rows, reader, verify, resume, export."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from hcc_shards.annotation import SOURCE_PREDICTION
from hcc_shards.cli import main
from hcc_shards.errors import PredictionError
from hcc_shards.geometry import Geometry
from hcc_shards.labels import LABELS, LIVER, TUMOR
from hcc_shards.predictions import prediction_case_id, write_predictions
from hcc_shards.read import open_dataset
from hcc_shards.read.stream import annotated_mask
from hcc_shards.verify import verify_dataset

pytestmark = pytest.mark.filterwarnings("error::UserWarning")


def _build(dicom: str, out: str):
    from hcc_shards.build.local import run_local
    from hcc_shards.build.plan import BuildPlan, flag_values

    return run_local(BuildPlan.from_flags(flag_values(input=dicom, output=out)), workers=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> str:
    from hcc_shards.synth import generate_cohort

    root = tmp_path_factory.mktemp("pred-cohort") / "dicom"
    generate_cohort(str(root), patients=2, size="small", layout="tcia", seed=0, workers=1)
    return str(root)


@pytest.fixture(scope="module")
def built(cohort: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("pred-build") / "out"
    summary = _build(cohort, str(out))
    assert summary.cases_written == 2
    return str(out)


@pytest.fixture()
def dataset(built: str, tmp_path: Path) -> str:
    """A private copy of the build, so that each test may write and damage it."""
    out = tmp_path / "out"
    shutil.copytree(built, out)
    return str(out)


def _stored_labels(url: str) -> dict[str, np.ndarray]:
    return {c.case_id: np.asarray(c.label) for c in open_dataset(url)}


def _perturbed(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A model that misses the top slice of each liver and predicts no portal vein or aorta."""
    out = {}
    for case_id, label in labels.items():
        pred = np.where(np.isin(label, (LIVER, TUMOR)), label, 0).astype(np.uint8)
        top = int(np.flatnonzero((pred == LIVER).any(axis=(1, 2))).max())
        pred[top][pred[top] == LIVER] = 0
        out[case_id] = pred
    return out


def _files(root: str) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def test_identity_and_perturbed_predictions_are_rows_of_source_prediction(dataset: str) -> None:
    labels = _stored_labels(dataset)
    same = write_predictions(dataset, labels, name="identity", model="stored labels 1.0")
    worse = write_predictions(
        dataset, _perturbed(labels), name="perturbed", model="toy 0.1", annotated_labels=["liver", "tumor"]
    )
    ds = open_dataset(dataset)
    assert len(ds) == 6
    rows = {r["case_id"]: r for r in ds.manifest.to_pylist()}
    for written, name in ((same, "identity"), (worse, "perturbed")):
        for row in written.rows:
            got = rows[row.case_id]
            ref = rows[got["reference_case_id"]]
            assert row.case_id == prediction_case_id(name, ref["case_id"])
            assert got["annotation_source"] == SOURCE_PREDICTION and ref["annotation_source"] == "manual"
            assert got["seg_series_description"] == name and got["path"].startswith(
                ref["image_path"] + "/labels/"
            )
            pred = labels[ref["case_id"]] if name == "identity" else _perturbed(labels)[ref["case_id"]]
            voxel_ml = float(np.prod(ref["spacing_zyx"])) / 1000.0
            for lab in LABELS:
                if lab.name in got["annotated_labels"]:
                    assert got[f"voxels_{lab.name}"] == int(np.count_nonzero(pred == lab.value))
                    assert got[f"volume_ml_{lab.name}"] == pytest.approx(got[f"voxels_{lab.name}"] * voxel_ml)
                else:
                    assert got[f"voxels_{lab.name}"] is None and got[f"dice_{lab.name}"] is None
    for row in same.rows:
        assert all(getattr(row, f"dice_{lab.name}") == 1.0 for lab in LABELS)
        assert row.source_volume_ml_liver == pytest.approx(
            rows[row.reference_case_id]["source_volume_ml_liver"], rel=0.05
        )
    for row in worse.rows:
        assert row.dice_liver is not None and 0.5 < row.dice_liver < 1.0
        assert row.dice_tumor == 1.0 and row.annotated_labels == ("liver", "tumor")
        assert row.content_creator == "toy 0.1"

    only = ds.filter(annotation_source=SOURCE_PREDICTION)
    assert sorted(only.case_ids) == sorted(r.case_id for r in (*same.rows, *worse.rows))
    assert len(ds.filter(annotation_source=["manual", "ai", "ai_corrected", "unknown"])) == 2
    assert len(open_dataset(dataset, predictions=False)) == 2
    # A patch of the perturbed model marks the labels it does not predict as not annotated.
    assert annotated_mask(ds, worse.rows[0].case_id).tolist() == [True, True, False, False]
    assert annotated_mask(ds, same.rows[0].case_id).tolist() == [True, True, True, True]
    case = ds.case(worse.rows[0].case_id)
    assert np.array_equal(np.asarray(case.label), _perturbed(labels)[worse.rows[0].reference_case_id])
    assert (
        case.foreground("liver").shape[1] == 3
        and case.foreground_counts()["liver"] == worse.rows[0].voxels_liver
    )


def test_label_image_opens_in_zarr_like_the_builds(dataset: str) -> None:
    labels = _stored_labels(dataset)
    written = write_predictions(dataset, labels, name="identity", model="m")
    version = written.version_url
    for row in written.rows:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            group = zarr.open_group(f"{version}/{row.path}", mode="r")
            listed = zarr.open_group(f"{version}/{row.image_path}/labels", mode="r")
            image = zarr.open_group(f"{version}/{row.image_path}", mode="r")
            assert np.array_equal(group["0"][...], labels[row.reference_case_id])
        assert (
            row.case_id in listed.attrs["ome"]["labels"]
            and row.reference_case_id in listed.attrs["ome"]["labels"]
        )
        assert row.case_id not in image.attrs["hcc_shards"]["annotations"]  # the image group is untouched
        ref_dir = Path(version) / row.image_path / "labels" / row.reference_case_id
        mine = json.loads((Path(version) / row.path / "0" / "zarr.json").read_text())
        theirs = json.loads((ref_dir / "0" / "zarr.json").read_text())
        assert mine == theirs  # same shape, chunks, shards, codecs, fill and dimension names
        ome = dict(group.attrs["ome"])
        ref_ome = json.loads((ref_dir / "zarr.json").read_text())["attributes"]["ome"]
        assert ome["image-label"] == ref_ome["image-label"]
        assert ome["multiscales"][0]["name"] == row.case_id
        assert ome["multiscales"][0]["datasets"] == ref_ome["multiscales"][0]["datasets"]
        attrs = group.attrs["hcc_shards"]
        assert attrs["annotation"]["source"] == SOURCE_PREDICTION
        assert attrs["prediction"] == {
            "name": "identity",
            "model": "m",
            "reference_case_id": row.reference_case_id,
        }


def test_verify_checks_predictions_and_finds_a_flipped_byte(dataset: str, capsys) -> None:
    written = write_predictions(dataset, _stored_labels(dataset), name="identity", model="m")
    report = verify_dataset(dataset)
    assert report.ok and report.cases == 4
    shard = sorted((Path(written.version_url) / written.rows[0].path / "0" / "c").rglob("*"))
    blob = next(p for p in shard if p.is_file())
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert main(["verify", dataset]) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT {written.rows[0].case_id}" in out and "1 corrupted" in out


def test_a_rerun_of_the_build_keeps_the_predictions(cohort: str, dataset: str) -> None:
    written = write_predictions(dataset, _stored_labels(dataset), name="identity", model="m")
    before = _files(written.version_url)
    summary = _build(cohort, dataset)
    assert summary.cases_resumed == 2 and summary.cases_written == 0
    after = _files(written.version_url)
    kept = [k for k in before if k.startswith(("predictions/", "complete/predictions/")) or "/labels/" in k]
    assert kept and {k: after.get(k) for k in kept} == {k: before[k] for k in kept}
    ds = open_dataset(dataset)
    assert len(ds.filter(annotation_source=SOURCE_PREDICTION)) == 2
    assert verify_dataset(dataset).ok


def test_export_seg_of_a_prediction_row(dataset: str, tmp_path: Path) -> None:
    import pydicom

    written = write_predictions(dataset, _perturbed(_stored_labels(dataset)), name="p", model="toy-model")
    dest = tmp_path / "pred.dcm"
    assert main(["export", "seg", dataset, written.rows[0].case_id, str(dest)]) == 0
    seg = pydicom.dcmread(dest)
    assert {s.SegmentAlgorithmType for s in seg.SegmentSequence} == {"AUTOMATIC"}
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "toy-model"
    assert {s.SegmentLabel for s in seg.SegmentSequence} == {"liver", "tumor"}


def test_bad_predictions_are_refused_and_nothing_is_written(dataset: str) -> None:
    labels = _stored_labels(dataset)
    first, second = sorted(labels)
    before = _files(dataset)
    bad_shape = {first: labels[first], second: labels[second][:-1]}
    with pytest.raises(PredictionError, match=rf"case '{second}': shape .* expected the stored grid"):
        write_predictions(dataset, bad_shape, name="bad", model="m")
    liver_only = {first: labels[first]}
    with pytest.raises(PredictionError, match=rf"case '{first}': values \[2, 3, 4\] outside"):
        write_predictions(dataset, liver_only, name="bad", model="m", annotated_labels=["liver"])
    with pytest.raises(PredictionError, match="'nobody_0000000000000000': not in the manifest"):
        write_predictions(dataset, {"nobody_0000000000000000": labels[first]}, name="bad", model="m")
    assert _files(dataset) == before
    write_predictions(dataset, liver_only, name="taken", model="m")
    with pytest.raises(PredictionError, match="already exists"):
        write_predictions(dataset, liver_only, name="taken", model="m")
    replaced = write_predictions(dataset, liver_only, name="taken", model="m2", replace_set=True)
    assert [r.content_creator for r in replaced.rows] == ["m2"]
    assert len(open_dataset(dataset).filter(annotation_source=SOURCE_PREDICTION)) == 1


def test_cli_adds_npy_and_nifti_predictions(dataset: str, tmp_path: Path, capsys) -> None:
    from hcc_shards.export.nifti import nifti_bytes

    ds = open_dataset(dataset)
    first, second = ds.case_ids
    folder = tmp_path / "preds"
    folder.mkdir()
    np.save(folder / f"{first}.npy", np.asarray(ds.case(first).label))
    case = ds.case(second)
    (folder / f"{second}.nii.gz").write_bytes(nifti_bytes(np.asarray(case.label), case.geometry))
    (folder / "README.txt").write_text("not a prediction")
    assert main(["predictions", "add", dataset, "cli", "--from", str(folder), "--model", "nn 2"]) == 0
    out = capsys.readouterr().out
    assert "wrote prediction set cli (2 cases)" in out and out.count("liver=1.000") == 2
    assert verify_dataset(dataset).ok

    moved = case.geometry.affine.copy()
    moved[:3, 3] += 1.0
    shifted = Geometry(shape=case.geometry.shape, affine=moved)
    (folder / f"{second}.nii.gz").write_bytes(nifti_bytes(np.asarray(case.label), shifted))
    assert main(["predictions", "add", dataset, "moved", "--from", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"case '{second}'" in err and "origin" in err and "nothing written" in err
    assert not (Path(open_dataset(dataset).store.root_url) / "predictions" / "moved.parquet").exists()

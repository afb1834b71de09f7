"""NIfTI and nnU-Net exports: read back with SimpleITK, geometry equal to the manifest's."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hcc_shards.cli import main
from hcc_shards.geometry import Geometry, ras_xyz_affine
from hcc_shards.read import open_dataset


def _check(path: Path, row: dict, expected: np.ndarray) -> None:
    img = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(img), expected)
    assert np.allclose(img.GetSpacing(), row["spacing_zyx"][::-1])
    assert np.allclose(img.GetOrigin(), row["origin_lps"], atol=1e-4)
    direction = np.asarray(row["direction"])
    assert np.allclose(np.asarray(img.GetDirection()).reshape(3, 3), direction[:, ::-1], atol=1e-5)
    # A voxel's world point per SimpleITK equals the manifest geometry's.
    geo = Geometry.from_components(
        shape=row["shape_zyx"],
        spacing_zyx=row["spacing_zyx"],
        origin_lps=row["origin_lps"],
        direction=direction,
    )
    k, j, i = 3, 7, 5
    assert np.allclose(
        img.TransformIndexToPhysicalPoint((i, j, k)), geo.index_to_world([[k, j, i]])[0], atol=1e-3
    )


def _sform(path: Path) -> np.ndarray:
    """The NIfTI-1 sform (srow_x, srow_y, srow_z) read from the header bytes: RAS."""
    import gzip

    raw = gzip.decompress(path.read_bytes())
    return np.vstack([np.frombuffer(raw, "<f4", 4, 280 + 16 * r) for r in range(3)] + [[0, 0, 0, 1]])


def test_export_nifti_round_trips_arrays_and_geometry(built, tmp_path):
    url, _ = built
    assert main(["export", "nifti", url, str(tmp_path / "nii")]) == 0
    ds = open_dataset(url)
    for case in ds:
        row = case.metadata
        _check(tmp_path / "nii" / "images" / f"{case.case_id}.nii.gz", row, np.asarray(case.image))
        _check(tmp_path / "nii" / "labels" / f"{case.case_id}.nii.gz", row, np.asarray(case.label))
        sform = _sform(tmp_path / "nii" / "images" / f"{case.case_id}.nii.gz")
        assert np.allclose(sform, ras_xyz_affine(case.geometry.affine), atol=1e-3)


def test_export_nnunet_layout_and_dataset_json(built, tmp_path):
    url, _ = built
    assert main(["export", "nnunet", url, str(tmp_path), "--dataset-id", "7", "--filter", "split=train"]) == 0
    root = tmp_path / "Dataset007_export_test"
    doc = json.loads((root / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "CT"}
    assert doc["labels"] == {"background": 0, "liver": 1, "tumor": 2, "portal_vein": 3, "aorta": 4}
    assert doc["numTraining"] == 2 and doc["file_ending"] == ".nii.gz"
    train = open_dataset(url).filter(split="train")
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == sorted(
        f"{c}_0000.nii.gz" for c in train.case_ids
    )
    assert sorted(p.name for p in (root / "labelsTr").iterdir()) == sorted(
        f"{c}.nii.gz" for c in train.case_ids
    )
    for case in train:
        _check(root / "labelsTr" / f"{case.case_id}.nii.gz", case.metadata, np.asarray(case.label))


def test_export_refuses_an_unknown_column_and_an_empty_filter(built, tmp_path, capsys):
    url, _ = built
    assert main(["export", "nifti", url, str(tmp_path), "--filter", "nosuch=1"]) == 2
    assert main(["export", "nnunet", url, str(tmp_path), "--dataset-id", "3", "--filter", "split=none"]) == 2
    assert "no case" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"1\.\.999"):
        from hcc_shards.export.nnunet import dataset_folder

        dataset_folder(1000, "x")

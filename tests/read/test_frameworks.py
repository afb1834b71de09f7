"""MONAI and TorchIO adapters with the real libraries: their spatial transforms see true geometry."""

import numpy as np
import pytest

monai = pytest.importorskip("monai")
tio = pytest.importorskip("torchio")
torch = pytest.importorskip("torch")

from monai.transforms import Compose, Orientationd, Spacingd  # noqa: E402

from hcc_shards.read import PatchStream, RandomPatches, open_dataset  # noqa: E402
from hcc_shards.read.monai import lps_zyx, monai_dataset, to_monai  # noqa: E402
from hcc_shards.read.torch import ResumableLoader  # noqa: E402
from hcc_shards.read.torchio import SubjectTransform, from_subject, to_subject  # noqa: E402

pytestmark = pytest.mark.reader_env

PATCH = (6, 16, 12)
VOXELS = np.array([[0, 0, 0], [1, 2, 3], [5, 15, 11], [3, 7, 2]])  # (z, y, x) of the patch


def _patch(root):
    ds = open_dataset(root)
    stream = PatchStream(ds, RandomPatches(PATCH, samples_per_epoch=2), seed=1, threads=0)
    patch = next(iter(stream.generate(epoch=0, start=0, rank=0, world_size=1)))
    # A marker value at each test voxel, so that resampled outputs can be checked voxel by voxel.
    image = patch.image.copy()
    for n, v in enumerate(VOXELS):
        image[tuple(v)] = 2000 + n
    item = patch.as_dict()
    item["image"] = image
    return ds, stream, item, patch.geometry


def _ras(points_lps):
    return np.asarray(points_lps) * np.array([-1.0, -1.0, 1.0])


def _check_markers(tensor, affine_ras_xyz, geometry):
    """Each marker sits, in the transformed array, at the index its world point maps to."""
    inv = np.linalg.inv(np.asarray(affine_ras_xyz, dtype=np.float64))
    data = np.asarray(tensor)[0]
    for n, v in enumerate(VOXELS):
        world = _ras(geometry.index_to_world(v[None])[0])
        ijk = inv @ np.append(world, 1.0)
        idx = tuple(round(float(c)) for c in ijk[:3])
        assert np.allclose(ijk[:3], idx, atol=1e-6)
        assert data[idx] == 2000 + n


def test_to_monai_metatensor_affine_is_ras_xyz(mini_root):
    _, _, item, geometry = _patch(mini_root)
    out = to_monai(item)
    img = out["image"]
    assert isinstance(img, monai.data.MetaTensor) and tuple(img.shape) == (1, PATCH[2], PATCH[1], PATCH[0])
    _check_markers(img, img.affine, geometry)
    back, affine = lps_zyx(img)
    assert np.array_equal(back[0].numpy(), item["image"].astype(np.float32))
    assert np.allclose(affine, geometry.affine)


def test_monai_orientation_and_spacing_keep_world_positions(mini_root):
    _, _, item, geometry = _patch(mini_root)
    oriented = Orientationd(keys=["image", "label"], axcodes="RAS")(to_monai(item))
    img = oriented["image"]
    # Axial LPS patch: x runs to L and y to P, so RAS flips both; the markers stay at their world points.
    assert np.allclose(np.diag(np.asarray(img.affine))[:3] > 0, True)
    _check_markers(img, img.affine, geometry)
    sz, sy, sx = geometry.spacing
    target = (sx, sy, sz / 2)
    spaced = Spacingd(keys=["image", "label"], pixdim=target, mode=("nearest", "nearest"))(oriented)
    out = spaced["image"]
    assert np.allclose(np.linalg.norm(np.asarray(out.affine)[:3, :3], axis=0), target)
    assert out.shape[3] in (2 * PATCH[0] - 1, 2 * PATCH[0])
    _check_markers(out, out.affine, geometry)  # slice k lands on 2k with nearest resampling


def test_monai_dataset_runs_in_a_dataloader_with_transforms(mini_root):
    ds = open_dataset(mini_root)
    stream = PatchStream(ds, RandomPatches(PATCH, samples_per_epoch=4), seed=3, threads=0)
    transform = Compose([Orientationd(keys=["image", "label"], axcodes="RAS")])
    loader = ResumableLoader(
        monai_dataset(stream, transform), batch_size=2, collate_fn=monai.data.list_data_collate
    )
    batches = list(loader)
    assert [b["position"].tolist() for b in batches] == [[0, 1], [2, 3]]
    img = batches[0]["image"]
    assert isinstance(img, monai.data.MetaTensor) and tuple(img.shape) == (2, 1, PATCH[2], PATCH[1], PATCH[0])
    assert tuple(img.affine.shape) == (2, 4, 4)
    assert loader.state_dict()["epoch"] == 1


def test_torchio_subject_canonical_and_random_affine(mini_root):
    _, _, item, geometry = _patch(mini_root)
    subject = to_subject(item)
    assert isinstance(subject["image"], tio.ScalarImage) and isinstance(subject["label"], tio.LabelMap)
    assert subject["image"].spatial_shape == (PATCH[2], PATCH[1], PATCH[0])
    assert subject["image"].orientation == ("L", "P", "S")
    _check_markers(subject["image"].data, subject["image"].affine, geometry)
    canonical = tio.ToCanonical()(subject)
    assert canonical["image"].orientation == ("R", "A", "S")
    _check_markers(canonical["image"].data, canonical["image"].affine, geometry)
    back = from_subject(subject)
    assert np.array_equal(back["image"].numpy(), item["image"].astype(np.float32))
    assert np.allclose(back["affine"].numpy(), geometry.affine)
    # RandomAffine resamples in world space on the subject's own grid: the grid is unchanged, labels stay labels.
    torch.manual_seed(0)
    moved = SubjectTransform(tio.RandomAffine(scales=0.1, degrees=10, translation=2))(item)
    assert np.allclose(moved["affine"].numpy(), geometry.affine)
    assert tuple(moved["image"].shape) == PATCH and tuple(moved["label"].shape) == PATCH
    assert set(np.unique(moved["label"].numpy())) <= set(np.unique(item["label"])) | {0}

"""Every patch carries its world geometry: the case's LPS affine moved to the patch start."""

import numpy as np
import pytest

from hcc_shards.read import PatchStream, RandomPatches, WholeVolumes, open_dataset

pytestmark = pytest.mark.reader_env


def test_patch_affine_maps_patch_voxels_to_the_case_world_points(mini_root):
    ds = open_dataset(mini_root)
    stream = PatchStream(ds, RandomPatches((6, 16, 16), samples_per_epoch=6), seed=2, threads=0)
    for patch in stream.generate(epoch=0, start=0, rank=0, world_size=1):
        case = ds.case(patch.spec.case_id)
        assert patch.affine.shape == (4, 4) and patch.geometry.shape == patch.image.shape
        local = np.array([[0, 0, 0], [1, 2, 3], [5, 15, 15]])
        world = patch.geometry.index_to_world(local)
        assert np.allclose(world, case.geometry.index_to_world(local + np.asarray(patch.spec.start)))
        assert np.allclose(patch.geometry.spacing, case.geometry.spacing)
    batch = next(stream.batches(3))
    assert batch["affine"].shape == (3, 4, 4) and batch["affine"].dtype == np.float64


def test_whole_volume_affine_is_the_case_affine(mini_root):
    ds = open_dataset(mini_root)
    for patch in PatchStream(ds, WholeVolumes(), threads=0):
        assert np.array_equal(patch.affine, ds.case(patch.spec.case_id).geometry.affine)

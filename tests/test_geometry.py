import numpy as np
import pytest

from hcc_shards.geometry import Geometry


def test_from_dicom_axial_matches_components():
    g = Geometry.from_dicom(
        shape=(3, 4, 5),
        image_orientation=[1, 0, 0, 0, 1, 0],
        first_position=[10.0, 20.0, -30.0],
        pixel_spacing=[0.7, 0.8],  # between rows, between columns
        slice_step=2.5,
    )
    h = Geometry.from_components(shape=(3, 4, 5), spacing_zyx=(2.5, 0.7, 0.8), origin_lps=(10, 20, -30))
    assert g == h
    assert g.spacing == pytest.approx((2.5, 0.7, 0.8))
    # column index moves along the row cosine (L), row index along the column cosine (P)
    np.testing.assert_allclose(g.index_to_world([[0, 0, 1]]), [[10.8, 20.0, -30.0]])
    np.testing.assert_allclose(g.index_to_world([[0, 1, 0]]), [[10.0, 20.7, -30.0]])
    np.testing.assert_allclose(g.index_to_world([[1, 0, 0]]), [[10.0, 20.0, -27.5]])


def test_world_index_roundtrip_oblique():
    theta = np.deg2rad(20)
    iop = [np.cos(theta), np.sin(theta), 0, -np.sin(theta), np.cos(theta), 0]
    g = Geometry.from_dicom(
        shape=(4, 6, 7),
        image_orientation=iop,
        first_position=[1, 2, 3],
        pixel_spacing=[0.9, 0.6],
        slice_step=-3.0,
    )
    idx = np.array([[1.5, 2.0, 3.25], [0, 0, 0], [3, 5, 6]])
    np.testing.assert_allclose(g.world_to_index(g.index_to_world(idx)), idx, atol=1e-9)
    assert g.voxel_volume_ml == pytest.approx(0.9 * 0.6 * 3.0 / 1000)


def test_dict_roundtrip_and_hash():
    g = Geometry.from_components(shape=(2, 3, 4), spacing_zyx=(5, 0.5, 0.5), origin_lps=(0, 1, 2))
    assert Geometry.from_dict(g.to_dict()) == g
    assert hash(Geometry.from_dict(g.to_dict())) == hash(g)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (0, 2, 2), "affine": np.eye(4)}, "three positive ints"),
        ({"shape": (2, 2, 2), "affine": np.eye(3)}, "must be 4x4"),
        (
            {
                "shape": (2, 2, 2),
                "affine": np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
            },
            "orthonormal",
        ),
    ],
)
def test_invalid_geometry_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Geometry(**kwargs)


def test_affine_is_read_only():
    g = Geometry.from_components(shape=(1, 1, 1), spacing_zyx=(1, 1, 1), origin_lps=(0, 0, 0))
    with pytest.raises(ValueError):
        g.affine[0, 0] = 3

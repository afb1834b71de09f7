"""One case's arrays as NIfTI (``.nii.gz``), geometry converted from (z, y, x) LPS.

SimpleITK takes an (x, y, z) grid in LPS and writes the NIfTI qform/sform in RAS itself (it
negates L and P), so the conversion here is only the axis order: spacing and direction columns
reversed, the array handed over as (z, y, x), which SimpleITK reads as (x, y, z) in Fortran
order. :func:`hcc_shards.geometry.ras_xyz_affine` is the resulting NIfTI affine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from hcc_shards import storage
from hcc_shards.geometry import Geometry
from hcc_shards.read import Dataset
from hcc_shards.shards.atomic import put_bytes_atomic

NIFTI_ENDING = ".nii.gz"


def nifti_bytes(array_zyx: np.ndarray, geometry: Geometry) -> bytes:
    """The gzipped NIfTI-1 file of a (z, y, x) array on ``geometry``."""
    import SimpleITK as sitk

    if tuple(array_zyx.shape) != geometry.shape:
        raise ValueError(f"array shape {array_zyx.shape} != geometry shape {geometry.shape}")
    img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    img.SetSpacing(tuple(reversed(geometry.spacing)))
    img.SetOrigin(geometry.origin)
    img.SetDirection(tuple(float(v) for v in geometry.direction[:, ::-1].ravel()))
    with tempfile.TemporaryDirectory(prefix="hcc-shards-nifti-") as tmp:
        path = os.path.join(tmp, f"case{NIFTI_ENDING}")
        sitk.WriteImage(img, path, useCompression=True)
        with open(path, "rb") as f:
            return f.read()


GEOMETRY_TOLERANCE_MM = 1e-3
"""Largest difference in origin (mm) and in relative spacing or direction cosine that
:func:`array_from_nifti` accepts (NIfTI stores its affine in float32)."""


def array_from_nifti(blob: bytes, geometry: Geometry, *, name: str = "NIfTI") -> np.ndarray:
    """The (z, y, x) array of a NIfTI file written in :func:`nifti_bytes`'s convention on ``geometry``.

    ValueError, naming ``name`` and both values, when its grid is not ``geometry`` (shape, spacing,
    origin or direction): an array on another grid would be read with the wrong voxels.
    """
    import SimpleITK as sitk

    ending = NIFTI_ENDING if blob[:2] == b"\x1f\x8b" else ".nii"
    with tempfile.TemporaryDirectory(prefix="hcc-shards-nifti-") as tmp:
        path = os.path.join(tmp, f"in{ending}")
        with open(path, "wb") as f:
            f.write(blob)
        img = sitk.ReadImage(path)
    array = sitk.GetArrayFromImage(img)
    spacing = tuple(reversed(img.GetSpacing()))
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)[:, ::-1]
    checks = (
        ("shape", tuple(array.shape), geometry.shape, lambda a, b: a == b),
        (
            "spacing (z, y, x)",
            spacing,
            tuple(geometry.spacing),
            lambda a, b: np.allclose(a, b, rtol=GEOMETRY_TOLERANCE_MM, atol=0),
        ),
        (
            "origin (LPS)",
            tuple(img.GetOrigin()),
            tuple(geometry.origin),
            lambda a, b: np.allclose(a, b, rtol=0, atol=GEOMETRY_TOLERANCE_MM),
        ),
        (
            "direction",
            direction.round(6).tolist(),
            np.asarray(geometry.direction).round(6).tolist(),
            lambda a, b: np.allclose(a, b, rtol=0, atol=GEOMETRY_TOLERANCE_MM),
        ),
    )
    for what, got, expected, same in checks:
        if not same(got, expected):
            raise ValueError(f"{name}: {what} {got}, expected the stored grid's {expected}")
    return array


def export_nifti(
    dataset: Dataset,
    dest: str,
    storage_options: dict[str, Any] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """``DEST/images/<case_id>.nii.gz`` (int16 HU) and ``DEST/labels/<case_id>.nii.gz`` (uint8) per case.

    Each file is written whole (temporary sibling and rename, or one PUT). Returns the case ids.
    """
    done = []
    for case in dataset:
        geometry = case.geometry
        for folder, array in (("images", case.image), ("labels", case.label)):
            url = storage.join(dest, folder, f"{case.case_id}{NIFTI_ENDING}")
            put_bytes_atomic(url, nifti_bytes(np.asarray(array), geometry), storage_options)
        done.append(case.case_id)
        if progress is not None:
            progress(case.case_id)
    return done

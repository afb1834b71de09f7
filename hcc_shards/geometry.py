"""Physical geometry of a voxel grid: a shape plus a float64 4x4 LPS affine.

Array index order is (z, y, x) everywhere in hcc-shards. The affine maps a homogeneous
array index ``(k, j, i, 1)`` (slice, row, column) to a DICOM patient coordinate in
millimetres ``(L, P, S, 1)``. Spacing, origin and direction are derived from the affine
and never stored twice. Voxel ``(0, 0, 0)`` has its *centre* at the origin.

This module imports only numpy: the reader depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

AXES_ZYX: tuple[str, str, str] = ("z", "y", "x")
"""Names of the array axes, in array order."""

_ORTHO_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class Geometry:
    """A regular voxel grid placed in LPS patient space."""

    shape: tuple[int, int, int]
    """Number of voxels along (z, y, x)."""
    affine: np.ndarray
    """float64 (4, 4): array index (z, y, x) -> LPS millimetres of the voxel centre."""

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ValueError(f"Geometry shape must be three positive ints (z, y, x), got {self.shape!r}")
        affine = np.array(self.affine, dtype=np.float64, copy=True)
        if affine.shape != (4, 4):
            raise ValueError(f"Geometry affine must be 4x4, got shape {affine.shape}")
        if not np.allclose(affine[3], [0, 0, 0, 1]):
            raise ValueError(f"Geometry affine last row must be [0, 0, 0, 1], got {affine[3].tolist()}")
        if not np.all(np.isfinite(affine)):
            raise ValueError("Geometry affine must be finite")
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise ValueError(f"Geometry spacing must be positive, got {spacing.tolist()}")
        direction = affine[:3, :3] / spacing
        if not np.allclose(direction.T @ direction, np.eye(3), atol=_ORTHO_TOL):
            raise ValueError(
                "Geometry direction columns must be orthonormal (sheared grids are not supported), "
                f"got {direction.round(6).tolist()}"
            )
        affine.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)

    # -- alternate constructors -------------------------------------------------------
    @classmethod
    def from_components(
        cls,
        *,
        shape: Sequence[int],
        spacing_zyx: Sequence[float],
        origin_lps: Sequence[float],
        direction: Sequence[Sequence[float]] | np.ndarray | None = None,
    ) -> Geometry:
        """Build from spacing (z, y, x), origin (LPS) and direction.

        ``direction`` is 3x3 with one column per array axis (z, y, x), each a unit vector
        in LPS. The default is the axial identity: z -> S, y -> P, x -> L.
        """
        d = np.array(_default_direction() if direction is None else direction, dtype=np.float64)
        if d.shape != (3, 3):
            raise ValueError(f"direction must be 3x3, got shape {d.shape}")
        affine = np.eye(4)
        affine[:3, :3] = d * np.asarray(spacing_zyx, dtype=np.float64)[None, :]
        affine[:3, 3] = np.asarray(origin_lps, dtype=np.float64)
        return cls(shape=tuple(shape), affine=affine)

    @classmethod
    def from_dicom(
        cls,
        *,
        shape: Sequence[int],
        image_orientation: Sequence[float],
        first_position: Sequence[float],
        pixel_spacing: Sequence[float],
        slice_step: Sequence[float] | float,
    ) -> Geometry:
        """Build from DICOM attribute values (no pydicom needed).

        ``image_orientation`` is ImageOrientationPatient (row cosine, then column cosine),
        ``pixel_spacing`` is PixelSpacing (between rows, between columns),
        ``first_position`` the ImagePositionPatient of slice 0 and ``slice_step`` either the
        vector from slice k to slice k+1 or its length along the slice normal.
        """
        iop = np.asarray(image_orientation, dtype=np.float64)
        if iop.shape != (6,):
            raise ValueError(f"ImageOrientationPatient must have 6 values, got {len(iop)}")
        row_cos, col_cos = iop[:3], iop[3:]
        normal = np.cross(row_cos, col_cos)
        step = np.asarray(slice_step, dtype=np.float64)
        step_vec = normal * float(step) if step.ndim == 0 else step
        dr, dc = (float(v) for v in pixel_spacing)
        affine = np.eye(4)
        affine[:3, 0] = step_vec  # z: next slice
        affine[:3, 1] = col_cos * dr  # y: next row moves along the column direction
        affine[:3, 2] = row_cos * dc  # x: next column moves along the row direction
        affine[:3, 3] = np.asarray(first_position, dtype=np.float64)
        return cls(shape=tuple(shape), affine=affine)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        return cls.from_components(
            shape=data["shape_zyx"],
            spacing_zyx=data["spacing_zyx"],
            origin_lps=data["origin_lps"],
            direction=data["direction"],
        )

    # -- derived values -----------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm along (z, y, x)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def origin(self) -> tuple[float, float, float]:
        """LPS position (mm) of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix; column a is the LPS unit vector of array axis a (z, y, x)."""
        return self.affine[:3, :3] / np.asarray(self.spacing)[None, :]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm^3)."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def index_to_world(self, index_zyx: np.ndarray) -> np.ndarray:
        """(N, 3) array indices (z, y, x) -> (N, 3) LPS mm."""
        idx = np.asarray(index_zyx, dtype=np.float64).reshape(-1, 3)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, points_lps: np.ndarray) -> np.ndarray:
        """(N, 3) LPS mm -> (N, 3) continuous array indices (z, y, x)."""
        pts = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
        return np.linalg.solve(self.affine[:3, :3], (pts - self.affine[:3, 3]).T).T

    def region(self, start_zyx: Sequence[int], shape_zyx: Sequence[int]) -> Geometry:
        """The grid of the box of ``shape_zyx`` voxels whose voxel (0, 0, 0) is voxel ``start_zyx`` here.

        Same spacing and direction; the origin moves to the centre of voxel ``start_zyx`` (which may
        lie outside this grid: a padded patch).
        """
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, :3] @ np.asarray(start_zyx, dtype=np.float64) + self.affine[:3, 3]
        return Geometry(shape=tuple(shape_zyx), affine=affine)  # type: ignore[arg-type]

    def is_close(self, other: Geometry, *, atol_mm: float = 1e-3) -> bool:
        """Same shape and every voxel centre within ``atol_mm``."""
        if self.shape != other.shape:
            return False
        corners = np.array(
            [
                [z, y, x]
                for z in (0, self.shape[0] - 1)
                for y in (0, self.shape[1] - 1)
                for x in (0, self.shape[2] - 1)
            ],
            dtype=np.float64,
        )
        return bool(np.max(np.abs(self.index_to_world(corners) - other.index_to_world(corners))) <= atol_mm)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; keys match the manifest columns in docs/FORMAT.md."""
        return {
            "shape_zyx": list(self.shape),
            "spacing_zyx": list(self.spacing),
            "origin_lps": list(self.origin),
            "direction": self.direction.tolist(),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        return self.shape == other.shape and bool(np.array_equal(self.affine, other.affine))

    def __hash__(self) -> int:
        return hash((self.shape, self.affine.tobytes()))

    def __repr__(self) -> str:
        sp = ", ".join(f"{v:.4g}" for v in self.spacing)
        og = ", ".join(f"{v:.4g}" for v in self.origin)
        return f"Geometry(shape={self.shape}, spacing_zyx=({sp}), origin_lps=({og}))"


def _default_direction() -> np.ndarray:
    # Axial, head-first supine: z increases towards S, rows towards P, columns towards L.
    return np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ZYX_TO_XYZ = [2, 1, 0, 3]


def ras_xyz_affine(affine_lps_zyx: np.ndarray) -> np.ndarray:
    """The affine for the same grid as NIfTI, MONAI and TorchIO see it: index (i, j, k) = (x, y, z)
    of the array transposed to (x, y, z), mapped to RAS mm (L and P negated).

    The one definition of the LPS (z, y, x) -> RAS (x, y, z) conversion; arrays go with
    ``array.transpose(2, 1, 0)`` (channel axes first).
    """
    a = np.asarray(affine_lps_zyx, dtype=np.float64)
    return _LPS_TO_RAS @ a[:, _ZYX_TO_XYZ]


def lps_zyx_affine(affine_ras_xyz: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ras_xyz_affine`: an (x, y, z) -> RAS affine as (z, y, x) -> LPS."""
    a = np.asarray(affine_ras_xyz, dtype=np.float64)
    return (_LPS_TO_RAS @ a)[:, _ZYX_TO_XYZ]


_LPS_TOWARDS = (("R", "L"), ("A", "P"), ("I", "S"))
"""Patient directions along -/+ L, P and S (DICOM LPS)."""


def axis_letters(direction: np.ndarray | Sequence[Sequence[float]]) -> tuple[str, str, str]:
    """Where increasing index points along each array axis (z, y, x): one of R/L, A/P, I/S each.

    Column a of ``direction`` is axis a's LPS unit vector; its largest component names the letter,
    e.g. ('S', 'P', 'L') for an axial head-first-supine CT. Oblique axes get their nearest letter.
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    letters = []
    for a in range(3):
        column = d[:, a]
        world = int(np.argmax(np.abs(column)))
        letters.append(_LPS_TOWARDS[world][int(column[world] > 0)])
    return tuple(letters)  # type: ignore[return-value]


def opposite_letter(letter: str) -> str:
    """The other end of an axis letter: R <-> L, A <-> P, I <-> S."""
    for low, high in _LPS_TOWARDS:
        if letter in (low, high):
            return high if letter == low else low
    raise ValueError(f"orientation letter must be one of R, L, A, P, I, S, got {letter!r}")

"""Smooth analytic solids in LPS millimetres, and a rasteriser that evaluates them on any grid.

Every solid answers ``inside(points)`` for an (..., 3) array of LPS points and gives a world
bounding box, so a grid only evaluates the block of voxels the solid can touch. Because the
solids live in world space, the same anatomy can be sampled on the CT grid, on a SEG grid
with another spacing, or on a coronal localizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hcc_shards.geometry import Geometry

Harmonic = tuple[float, float, float, float, float]
"""(amplitude, frequency along L, along P, along S, phase) of one radial wobble term."""


@dataclass(frozen=True)
class Blob:
    """An ellipsoid whose radius wobbles smoothly with direction: an irregular, organ-like solid."""

    centre: tuple[float, float, float]
    """LPS centre in mm."""
    axes: tuple[float, float, float]
    """Semi-axes along L, P, S in mm."""
    harmonics: tuple[Harmonic, ...] = ()
    """Radial wobble terms; the summed amplitudes stay well below 1 so the solid stays star-shaped."""

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        reach = np.asarray(self.axes) * (1.0 + sum(abs(h[0]) for h in self.harmonics))
        c = np.asarray(self.centre)
        return c - reach, c + reach

    def inside(self, p: np.ndarray) -> np.ndarray:
        q = (p - np.asarray(self.centre, dtype=p.dtype)) / np.asarray(self.axes, dtype=p.dtype)
        r = np.sqrt(np.sum(q * q, axis=-1))
        limit = np.ones(r.shape, dtype=p.dtype)
        for amp, fl, fp, fs, phase in self.harmonics:
            arg = q @ np.asarray([fl, fp, fs], dtype=p.dtype) + p.dtype.type(phase)
            limit += p.dtype.type(amp) * np.sin(arg)
        return r < limit

    def scaled(self, factor: float) -> Blob:
        """The same shape shrunk or grown about its centre."""
        return Blob(self.centre, tuple(a * factor for a in self.axes), self.harmonics)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Tube:
    """A capsule: every point within ``radius`` of the segment from ``start`` to ``end``."""

    start: tuple[float, float, float]
    """LPS mm."""
    end: tuple[float, float, float]
    """LPS mm."""
    radius: float
    """mm."""

    def bbox(self, min_radius: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.radius, min_radius)
        a, b = np.asarray(self.start), np.asarray(self.end)
        return np.minimum(a, b) - r, np.maximum(a, b) + r

    def inside(self, p: np.ndarray, min_radius: float = 0.0) -> np.ndarray:
        a, b = np.asarray(self.start, dtype=p.dtype), np.asarray(self.end, dtype=p.dtype)
        ab = b - a
        t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
        d = p - (a + t[..., None] * ab)
        r = max(self.radius, min_radius)
        return np.sum(d * d, axis=-1) < r * r


@dataclass(frozen=True)
class Column:
    """An elliptic cylinder along S, cut to ``s_range``."""

    centre_lp: tuple[float, float]
    """(L, P) of the axis in mm."""
    axes_lp: tuple[float, float]
    """Semi-axes along L and P in mm."""
    s_range: tuple[float, float] = (-1e5, 1e5)
    """Inferior and superior S limits in mm."""

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        (cl, cp), (al, ap) = self.centre_lp, self.axes_lp
        return np.array([cl - al, cp - ap, self.s_range[0]]), np.array([cl + al, cp + ap, self.s_range[1]])

    def level(self, p: np.ndarray) -> np.ndarray:
        """Squared normalised in-plane radius: < 1 inside the ellipse."""
        (cl, cp), (al, ap) = (
            (p.dtype.type(v) for v in self.centre_lp),
            (p.dtype.type(v) for v in self.axes_lp),
        )
        return ((p[..., 0] - cl) / al) ** 2 + ((p[..., 1] - cp) / ap) ** 2

    def inside(self, p: np.ndarray) -> np.ndarray:
        s = p[..., 2]
        return (self.level(p) < 1.0) & (s >= self.s_range[0]) & (s <= self.s_range[1])


@dataclass(frozen=True)
class Block:
    """A rectangular block of voxels of one slab, with the LPS centres of its voxels."""

    index: tuple[slice, slice, slice]
    """Where the block sits in the full (z, y, x) array."""
    points: np.ndarray
    """float32 (nz, ny, nx, 3) LPS mm of the voxel centres."""

    def local(self, slab_start: int) -> tuple[slice, slice, slice]:
        """The block's index relative to a slab that starts at ``slab_start``."""
        z = self.index[0]
        return (slice(z.start - slab_start, z.stop - slab_start), self.index[1], self.index[2])


def iter_slabs(geometry: Geometry, slab: int = 8) -> Iterator[tuple[int, int]]:
    """(start, stop) slice ranges that cover the grid; keeps the float64 point arrays small."""
    nz = geometry.shape[0]
    for z0 in range(0, nz, slab):
        yield z0, min(nz, z0 + slab)


def block(geometry: Geometry, z_range: tuple[int, int], lo: np.ndarray, hi: np.ndarray) -> Block | None:
    """Voxels of slices ``z_range`` whose centres may fall in the world box [lo, hi]; None if none."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    idx = geometry.world_to_index(corners)
    start = np.maximum(np.floor(idx.min(axis=0)).astype(int) - 1, [z_range[0], 0, 0])
    stop = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 2, [z_range[1], *geometry.shape[1:]])
    if np.any(stop <= start):
        return None
    # Broadcast one axis at a time: cheaper than materialising an index grid and a matmul.
    m = geometry.affine
    k, j, i = (np.arange(a, b, dtype=np.float64) for a, b in zip(start, stop, strict=True))
    # float32 halves the memory traffic of every shape test; 300 mm in float32 is exact to ~30 nm.
    points = (
        (m[:3, 3] + k[:, None] * m[:3, 0]).astype(np.float32)[:, None, None, :]
        + (j[:, None] * m[:3, 1]).astype(np.float32)[None, :, None, :]
        + (i[:, None] * m[:3, 2]).astype(np.float32)[None, None, :, :]
    )
    index = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    return Block(index=index, points=points)  # type: ignore[arg-type]


def full_slab(geometry: Geometry, z_range: tuple[int, int]) -> Block:
    """Every voxel of slices ``z_range``."""
    big = np.full(3, 1e7)
    out = block(geometry, z_range, -big, big)
    if out is None:
        raise ValueError(f"empty slab {z_range} for grid {geometry!r}")
    return out

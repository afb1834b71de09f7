"""Resampling of a case onto a target spacing: separable 1-D interpolation, world alignment exact.

Grid convention (docs/FORMAT.md, "Resampling"): the target grid keeps the source direction and the
centre of its voxel (0, 0, 0) is the centre of the source voxel (0, 0, 0). Along each axis with
``n`` source voxels of spacing ``s`` and target spacing ``t`` the target has
``m = ceil((n - 1) * s / t - 1e-3) + 1`` voxels, so the target voxel centres cover every source
voxel centre; target centres past the last source centre (less than one target voxel) take the
value at the source edge. Target voxel ``j`` of an axis samples the source at continuous index
``j * t / s``.

Order of operations for one case: (1) target geometry, (2) image: 1-D linear (or Catmull-Rom
cubic) interpolation in float32 along each axis that changes, in plane slab by slab of slices, then
along z, then round and clip to the HU range and cast to int16,
(3) labels: for every label present, its one-hot mask cropped to its bounding box (plus one voxel)
is interpolated linearly along each axis; each target voxel takes the label of highest
interpolated probability, background's probability being one minus the sum of the others (linear
interpolation of a partition of unity stays a partition of unity). Axes whose spacing does not
change are not touched. Working memory is a few float32 target-sized arrays, never a float64 copy.

When the spacing is anisotropic (largest / smallest > ``anisotropy_threshold``) the coarse axis
is, as in nnU-Net, interpolated on its own: it always uses linear interpolation, even when cubic
is asked for in plane, because a cubic kernel across thick slices overshoots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.errors import QuarantineError
from hcc_shards.geometry import Geometry
from hcc_shards.quarantine import Reason

__all__ = [
    "axis_positions",
    "resample_case",
    "resample_image",
    "resample_label",
    "target_geometry",
    "target_shape",
]

_SAME_SPACING_RTOL = 1e-6
_TIE_SHIFT = 1e-3
"""Label sample positions move this far (source voxels) towards the even neighbour, so an exact tie,
as at the midpoints of a 2x upsampling, goes to the even source voxel (round half to even). Ties to
background would lose half a slice at every surface; ties always upwards would keep the volume but
shift every structure by half a target voxel; to-even keeps both unbiased over a structure."""
_SLAB_VOXELS = 1024 * 1024
"""Voxels per slab of the image interpolation: float32 temporaries of ~4 MB stay in cache."""
_LABEL_SLAB_VOXELS = 2 * 1024 * 1024
"""Target voxels per slab of the label interpolation (a few float32 slab-sized arrays)."""


def target_shape(source: Geometry, spacing_zyx: Sequence[float]) -> tuple[int, int, int]:
    """Shape of the target grid (see the module docstring for the rule)."""
    spacing = _check_spacing(spacing_zyx)
    out = []
    for n, s, t in zip(source.shape, source.spacing, spacing, strict=True):
        if _same(s, t):
            out.append(n)
        else:
            out.append(max(1, math.ceil((n - 1) * s / t - 1e-3) + 1))
    return tuple(out)  # type: ignore[return-value]


def target_geometry(source: Geometry, spacing_zyx: Sequence[float]) -> Geometry:
    """Same direction and first voxel centre as ``source``, spacing ``spacing_zyx`` (z, y, x) mm."""
    spacing = _check_spacing(spacing_zyx)
    # Keep the source affine column exactly where the spacing does not change.
    affine = np.array(source.affine, dtype=np.float64)
    for a, (s, t) in enumerate(zip(source.spacing, spacing, strict=True)):
        if not _same(s, t):
            affine[:3, a] = source.direction[:, a] * t
    return Geometry(shape=target_shape(source, spacing), affine=affine)


def axis_positions(n_source: int, n_target: int, step: float) -> np.ndarray:
    """Continuous source indices sampled by the target voxels of one axis (float64)."""
    return np.arange(n_target, dtype=np.float64) * step if n_source > 1 else np.zeros(n_target)


def check_target_size(source: Geometry, spacing_zyx: Sequence[float], config: BuildConfig) -> Geometry:
    """The target grid of ``source``; raises ``resampled_too_large`` (before any array is made) when it
    holds more than ``config.max_voxels`` voxels (a 400 mm PixelSpacing resampled to 1 mm)."""
    target = target_geometry(source, spacing_zyx)
    voxels = int(np.prod(target.shape, dtype=np.int64))
    if voxels > config.max_voxels:
        raise QuarantineError(
            Reason.RESAMPLED_TOO_LARGE.value,
            f"the grid {source.shape} resampled to {tuple(spacing_zyx)} mm would be {target.shape} = {voxels} "
            f"voxels, more than max_voxels={config.max_voxels}; check the input's spacing",
        )
    return target


def resample_case(case: Case, spacing_zyx: Sequence[float], config: BuildConfig) -> Case:
    """``case`` on the grid :func:`target_geometry` gives, with the interpolation ``config`` asks for."""
    target = check_target_size(case.geometry, spacing_zyx, config)
    if target == case.geometry:
        return case.with_arrays(case.image, case.label, case.geometry)
    image = resample_image(
        case.image,
        case.geometry,
        target,
        kind=config.image_interpolation,
        anisotropy=config.anisotropy_threshold,
        clip=config.hu_clip,
    )
    label = resample_label(case.label, case.geometry, target, kind=config.label_interpolation)
    return case.with_arrays(image, label, target)


def resample_cases(cases: Sequence[Case], spacing_zyx: Sequence[float], config: BuildConfig) -> list[Case]:
    """Annotations of one image on the target grid: the shared image resampled once, each label once.

    Every case must hold the same image array on the same geometry (hcc_shards.dicom.decode
    ``decode_image_group``); the results share the one resampled image.
    """
    if not cases:
        return []
    first = cases[0]
    for c in cases[1:]:
        if c.image is not first.image or c.geometry != first.geometry:
            raise ValueError(
                f"annotations {first.case_id} and {c.case_id} do not share one image and grid; "
                "resample them separately (resample_case)"
            )
    target = target_geometry(first.geometry, spacing_zyx)
    if target == first.geometry:
        return [c.with_arrays(c.image, c.label, c.geometry) for c in cases]
    image = resample_image(
        first.image,
        first.geometry,
        target,
        kind=config.image_interpolation,
        anisotropy=config.anisotropy_threshold,
        clip=config.hu_clip,
    )
    return [
        c.with_arrays(
            image, resample_label(c.label, c.geometry, target, kind=config.label_interpolation), target
        )
        for c in cases
    ]


def resample_image(
    image: np.ndarray,
    source: Geometry,
    target: Geometry,
    *,
    kind: str = "linear",
    anisotropy: float = 3.0,
    clip: tuple[int, int] = (-32768, 32767),
) -> np.ndarray:
    """Image (z, y, x) on ``source`` -> int16 on ``target`` (which must share direction and origin)."""
    if kind not in ("linear", "cubic"):
        raise ValueError(f"image interpolation must be 'linear' or 'cubic', got {kind!r}")
    steps = _steps(source, target)
    if image.shape != source.shape:
        raise ValueError(f"image shape {image.shape} != source geometry shape {source.shape}")
    sp = source.spacing
    coarse = int(np.argmax(sp)) if max(sp) > anisotropy * min(sp) else -1
    kinds = ["linear" if a == coarse else kind for a in range(3)]
    changing = _axis_order(source.shape, target.shape, steps)
    if not changing:
        return np.ascontiguousarray(image, dtype=np.int16)
    pos = [axis_positions(source.shape[a], target.shape[a], steps[a]) for a in range(3)]
    in_plane = [a for a in changing if a != 0]
    out = np.empty(target.shape, dtype=np.int16)
    # Work in slabs of a few slices so every temporary stays in cache: in plane per z-slab, then
    # z per y-slab; the int16 conversion happens in the last pass, slab by slab.
    nz = source.shape[0]
    per_z = max(1, _SLAB_VOXELS // (source.shape[1] * source.shape[2]))
    linear_plane = bool(in_plane) and all(kinds[a] == "linear" and source.shape[a] > 1 for a in in_plane)
    if 0 not in changing:
        if linear_plane:
            _in_plane_linear(image, in_plane, pos, out, clip)
            return out
        for z0 in range(0, nz, per_z):
            block = image[z0 : z0 + per_z]
            for a in in_plane:
                block = _interp_axis(block, a, pos[a], kinds[a])
            out[z0 : z0 + per_z] = _to_int16(block, clip)
        return out
    mid = np.empty((nz, target.shape[1], target.shape[2]), dtype=np.float32) if in_plane else image
    if in_plane and linear_plane:
        _in_plane_linear(image, in_plane, pos, mid, clip)
    elif in_plane:
        for z0 in range(0, nz, per_z):
            block = image[z0 : z0 + per_z]
            for a in in_plane:
                block = _interp_axis(block, a, pos[a], kinds[a])
            mid[z0 : z0 + per_z] = block
    per_y = max(1, _SLAB_VOXELS // (nz * target.shape[2]))
    for y0 in range(0, target.shape[1], per_y):
        block = _interp_axis(mid[:, y0 : y0 + per_y], 0, pos[0], kinds[0])
        out[:, y0 : y0 + per_y] = _to_int16(block, clip)
    return out


def _in_plane_linear(
    image: np.ndarray, axes: Sequence[int], pos: Sequence[np.ndarray], out: np.ndarray, clip: tuple[int, int]
) -> None:
    """Linear resampling of each slice along ``axes`` (1, 2 or both, in that order) into ``out``.

    The arithmetic of :func:`_interp_axis` ("linear"), bit for bit, one slice at a time into
    buffers made once: every temporary stays in cache and nothing is allocated per slice
    (a quarter faster than slabs of temporaries, and no run-to-run swings from page faults).
    ``out`` is int16 (rounded and clipped) or float32.
    """
    shape = list(image.shape[1:])
    plans = []
    for a in axes:
        n = shape[a - 1]
        p = np.clip(pos[a], 0.0, n - 1)
        i0 = np.minimum(np.floor(p).astype(np.intp), n - 2)
        frac_shape = [1, 1]
        frac_shape[a - 1] = len(p)
        frac = (p - i0).astype(np.float32).reshape(frac_shape)
        shape[a - 1] = len(p)
        plans.append((a - 1, i0, i0 + 1, frac, np.empty(shape, np.float32), np.empty(shape, np.float32)))
    source = None if image.dtype == np.float32 else np.empty(image.shape[1:], np.float32)
    for z in range(image.shape[0]):
        plane = image[z]
        if source is not None:
            np.copyto(source, plane)
            plane = source
        for axis, i0, i1, frac, a0, a1 in plans:
            # mode="clip": the indices are in range, and the default mode buffers every take.
            np.take(plane, i0, axis=axis, out=a0, mode="clip")
            np.take(plane, i1, axis=axis, out=a1, mode="clip")
            a1 -= a0
            a1 *= frac
            a0 += a1
            plane = a0
        if out.dtype == np.int16:
            np.rint(plane, out=plane)
            np.clip(plane, clip[0], clip[1], out=plane)
        out[z] = plane


def _tie_to_even(pos: np.ndarray) -> np.ndarray:
    odd = (np.floor(pos).astype(np.int64) % 2) == 1
    return pos + np.where(odd, _TIE_SHIFT, -_TIE_SHIFT)


def _to_int16(block: np.ndarray, clip: tuple[int, int]) -> np.ndarray:
    if block.dtype == np.int16:
        return block
    block = np.asarray(block, dtype=np.float32)
    np.rint(block, out=block)
    np.clip(block, clip[0], clip[1], out=block)
    return block.astype(np.int16)


def resample_label(
    label: np.ndarray, source: Geometry, target: Geometry, *, kind: str = "label_safe"
) -> np.ndarray:
    """uint8 label map on ``source`` -> uint8 on ``target``; ``label_safe`` (default) or ``nearest``."""
    if kind not in ("label_safe", "nearest"):
        raise ValueError(f"label interpolation must be 'label_safe' or 'nearest', got {kind!r}")
    if label.shape != source.shape:
        raise ValueError(f"label shape {label.shape} != source geometry shape {source.shape}")
    steps = _steps(source, target)
    positions = [axis_positions(source.shape[a], target.shape[a], steps[a]) for a in range(3)]
    if kind == "nearest":
        idx = [
            np.clip(np.rint(p).astype(np.intp), 0, n - 1)
            for p, n in zip(positions, source.shape, strict=True)
        ]
        return np.ascontiguousarray(label[np.ix_(*idx)])
    out = np.zeros(target.shape, dtype=np.uint8)
    order = _axis_order(source.shape, target.shape, steps)
    # Slab by slab of target slices, so the float32 probabilities stay a few MB whatever the
    # volume (each slab reads the source slices its linear kernel touches, nothing more).
    per_z = max(1, _LABEL_SLAB_VOXELS // (target.shape[1] * target.shape[2]))
    # The two float32 accumulators of a slab, made once: fresh ones per slab cost their page faults.
    work = np.empty((2, min(per_z, target.shape[0]), target.shape[1], target.shape[2]), dtype=np.float32)
    for t0 in range(0, target.shape[0], per_z):
        t1 = min(t0 + per_z, target.shape[0])
        pz = positions[0][t0:t1]
        if 0 in order:
            s0 = max(int(np.floor(pz[0] - 2 * _TIE_SHIFT)), 0)
            s1 = min(int(np.floor(pz[-1] + 2 * _TIE_SHIFT)) + 2, source.shape[0])
        else:
            s0, s1 = t0, t1
        _label_safe_slab(
            label[s0:s1], s0, [pz, positions[1], positions[2]], order, out[t0:t1], work[:, : t1 - t0]
        )
    return out


def _label_safe_slab(
    block: np.ndarray,
    z_offset: int,
    positions: list[np.ndarray],
    order: list[int],
    out: np.ndarray,
    work: np.ndarray | None = None,
) -> None:
    """Label-safe resampling of source slices ``block`` (from ``z_offset``) into the slab ``out``.

    ``positions`` are the global source indices sampled by the slab's target voxels, per axis;
    ``work`` is room for two float32 arrays of the slab's shape (made here when not given).
    """
    values, boxes = _label_boxes(block)
    if not values:
        return
    offsets = (z_offset, 0, 0)
    local = [positions[0] - z_offset, positions[1], positions[2]]
    if work is None:
        work = np.empty((2, *out.shape), dtype=np.float32)
    best, total = work[0], work[1]
    best.fill(0.0)
    total.fill(0.0)
    for value, box in zip(values, boxes, strict=True):
        crop = tuple(
            slice(max(lo - 1, 0), min(hi + 1, n)) for (lo, hi), n in zip(box, block.shape, strict=True)
        )
        out_range = []
        for a, ((lo, hi), pos) in enumerate(zip(box, local, strict=True)):
            # A one-hot mask interpolated linearly is non-zero only on (lo - 1, hi) in source index.
            j0 = int(np.searchsorted(pos, lo - 1, side="right"))
            j1 = int(np.searchsorted(pos, hi, side="left"))
            if lo == 0:
                j0 = 0
            if hi == block.shape[a]:
                j1 = out.shape[a]
            out_range.append((j0, max(j0, j1)))
        if any(j1 <= j0 for j0, j1 in out_range):
            continue
        prob = (block[crop] == value).astype(np.float32)
        for a in range(3):
            j0, j1 = out_range[a]
            if a in order:
                pos = _tie_to_even(positions[a][j0:j1]) - (offsets[a] + crop[a].start)
                prob = _interp_axis(prob, a, pos, "linear")
            else:
                # Unchanged axis: target voxel j is source voxel j; drop the one-voxel margin.
                sl = [slice(None)] * 3
                sl[a] = slice(j0 - crop[a].start, j1 - crop[a].start)
                prob = prob[tuple(sl)]
        region = tuple(slice(j0, j1) for j0, j1 in out_range)
        sub_best, sub_out, sub_total = best[region], out[region], total[region]
        win = prob > sub_best
        sub_out[win] = value
        np.maximum(sub_best, prob, out=sub_best)
        sub_total += prob
    # Background wins where its probability (1 - sum of the labels) beats the best label.
    np.subtract(np.float32(1.0), total, out=total)
    out[best <= total] = 0


# -- internals ---------------------------------------------------------------------------


def _check_spacing(spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(v) for v in spacing_zyx)
    if len(sp) != 3 or not all(math.isfinite(v) and v > 0 for v in sp):
        raise ValueError(f"target spacing must be three positive mm values (z, y, x), got {spacing_zyx!r}")
    return sp  # type: ignore[return-value]


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _SAME_SPACING_RTOL * max(abs(a), abs(b))


def _steps(source: Geometry, target: Geometry) -> tuple[float, float, float]:
    """Source-index step per target voxel along each axis, after checking the grids are aligned."""
    if not np.allclose(source.origin, target.origin, rtol=0, atol=1e-6):
        raise ValueError(f"target origin {target.origin} must equal the source origin {source.origin}")
    if not np.allclose(source.direction, target.direction, rtol=0, atol=1e-6):
        raise ValueError(
            f"target direction {target.direction.round(6).tolist()} must equal the source direction "
            f"{source.direction.round(6).tolist()}"
        )
    out = []
    for s, t in zip(source.spacing, target.spacing, strict=True):
        out.append(1.0 if _same(s, t) else t / s)
    return tuple(out)  # type: ignore[return-value]


def _axis_order(src_shape: Sequence[int], dst_shape: Sequence[int], steps: Sequence[float]) -> list[int]:
    """Axes that change, the most shrinking first (cheapest order for the later passes)."""
    changing = [a for a in range(3) if not (steps[a] == 1.0 and src_shape[a] == dst_shape[a])]
    return sorted(changing, key=lambda a: dst_shape[a] / src_shape[a])


def _interp_axis(arr: np.ndarray, axis: int, pos: np.ndarray, kind: str) -> np.ndarray:
    """float32 samples of ``arr`` at continuous indices ``pos`` along ``axis`` (edges clamped)."""
    n = arr.shape[axis]
    if n == 1:
        return np.repeat(arr.astype(np.float32, copy=False), len(pos), axis=axis)
    pos = np.clip(pos, 0.0, n - 1)
    i0 = np.minimum(np.floor(pos).astype(np.intp), n - 2)
    frac = (pos - i0).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = len(pos)
    if kind == "linear":
        a0 = np.take(arr, i0, axis=axis).astype(np.float32, copy=False)
        a1 = np.take(arr, i0 + 1, axis=axis).astype(np.float32, copy=False)
        a1 -= a0
        a1 *= frac.reshape(shape)
        a0 += a1
        return a0
    # Catmull-Rom (Keys, a = -0.5): interpolating, 4 taps, no prefilter.
    t = frac
    t2, t3 = t * t, t * t * t
    weights = (
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    )
    out = None
    for k, w in enumerate(weights):
        idx = np.clip(i0 + (k - 1), 0, n - 1)
        term = np.take(arr, idx, axis=axis).astype(np.float32, copy=False)
        term = term * w.reshape(shape)
        if out is None:
            out = term
        else:
            out += term
    return out  # type: ignore[return-value]


def _label_boxes(label: np.ndarray) -> tuple[list[int], list[tuple[tuple[int, int], ...]]]:
    """Label values present (> 0) and their inclusive-exclusive bounding boxes, from projections."""
    top = int(label.max()) if label.size else 0
    if top == 0:
        return [], []
    if top < 8:
        # One bit per label value: two OR-reductions give every label's projections at once.
        bits = np.left_shift(np.uint8(1), label)
        plane = np.bitwise_or.reduce(bits, axis=0)
        z_bits = np.bitwise_or.reduce(bits.reshape(label.shape[0], -1), axis=1)
        del bits
        y_bits = np.bitwise_or.reduce(plane, axis=1)
        x_bits = np.bitwise_or.reduce(plane, axis=0)
        values, boxes = [], []
        for v in range(1, top + 1):
            bit = np.uint8(1 << v)
            idx = [np.flatnonzero(p & bit) for p in (z_bits, y_bits, x_bits)]
            if idx[0].size:
                values.append(v)
                boxes.append(tuple((int(i[0]), int(i[-1]) + 1) for i in idx))
        return values, boxes
    values, boxes = [], []
    for v in range(1, top + 1):
        mask = label == v
        zi = np.flatnonzero(mask.any(axis=(1, 2)))
        if zi.size == 0:
            continue
        sub = mask[zi[0] : zi[-1] + 1]
        yi = np.flatnonzero(sub.any(axis=(0, 2)))
        xi = np.flatnonzero(sub.any(axis=(0, 1)))
        values.append(v)
        boxes.append(
            ((int(zi[0]), int(zi[-1]) + 1), (int(yi[0]), int(yi[-1]) + 1), (int(xi[0]), int(xi[-1]) + 1))
        )
    return values, boxes

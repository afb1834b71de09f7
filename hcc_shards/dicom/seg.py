"""SEG pixel decode: frames -> one uint8 label map on the CT grid.

- BINARY: a pixel belongs to the frame's segment when its bit is set.
- FRACTIONAL: when ``value / MaximumFractionalValue >= BuildConfig.fractional_threshold``
  (default 0.5), for PROBABILITY and OCCUPANCY alike.
- LABELMAP: the pixel value is the segment number.

Frames are sparse and in any order: each is placed by the pairing (source instance, else
position; ``Pairing.frame_slices``). When every frame lies exactly on its CT slice (same
orientation, pixel spacing, rows, columns and position within ``position_tolerance_mm``) it is
painted there directly. Otherwise (a SEG on its own grid, HCC_001) every CT voxel centre takes
the value of the SEG pixel whose centre is nearest in world coordinates, on the SEG plane
nearest along the SEG normal, if that plane is within half a SEG slice step (a tie goes to the
higher index, ``floor(i + 0.5)``, along the SEG normal, rows and columns): nearest-neighbour
never invents label values. Where segments overlap, the label earliest in
``BuildConfig.overlap_priority`` wins (labels missing from it rank after all listed ones).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.ct import check_decodable
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.stack import ORIENTATION_TOLERANCE, PIXEL_SPACING_TOLERANCE_MM, SliceRef, slice_normal
from hcc_shards.errors import QuarantineError
from hcc_shards.geometry import Geometry
from hcc_shards.labels import BACKGROUND
from hcc_shards.quarantine import Reason


def priority_ranks(priority: Sequence[int]) -> np.ndarray:
    """uint8[256]: rank of each label value (lower wins); background ranks last."""
    ranks = np.full(256, len(priority), dtype=np.uint8)
    for i, value in enumerate(priority):
        ranks[int(value)] = i
    ranks[BACKGROUND] = 255
    return ranks


def paint(target: np.ndarray, mask: np.ndarray, value: int, ranks: np.ndarray) -> None:
    """Set ``target[mask] = value`` where ``value`` outranks what is there already."""
    if not target.flags.c_contiguous:
        wins = mask & (ranks[target] > ranks[value])
        target[wins] = value
        return
    # Masks are sparse: rank only the voxels they cover, not the whole plane.
    idx = np.flatnonzero(mask)
    flat = target.reshape(-1)
    flat[idx[ranks[flat[idx]] > ranks[value]]] = value


def paint_in_order(
    label: np.ndarray,
    jobs: Sequence[tuple[int, int, Any]],
    ranks: np.ndarray,
    mask_of: Callable[[Any], np.ndarray] | None = None,
) -> None:
    """``paint`` every (slice, value, mask) of ``jobs`` in turn onto a background ``label``.

    The same result as painting one after the other: each voxel ends with the value of lowest rank
    among the masks that cover it, the earliest on a tie. Written worst first, unconditionally,
    so that no mask is converted to indices (three times faster on a full SEG). With ``mask_of``
    the third member of a job is handed to it for the mask, made only when it is painted.
    """
    order = sorted(range(len(jobs)), key=lambda j: (-int(ranks[jobs[j][1]]), -j))
    for j in order:
        k, value, mask = jobs[j]
        if ranks[value] < ranks[BACKGROUND]:
            np.copyto(label[k], np.uint8(value), where=mask if mask_of is None else mask_of(mask))


def binary_frame_reader(ds: Dataset, header: InstanceHeader) -> Callable[[int], np.ndarray] | None:
    """Frame i of a BINARY SEG as a bool mask, unpacked from native PixelData when asked; or None.

    pydicom unpacks every frame at once (one byte per pixel: 52 MB for 199 frames of 512 x 512)
    before any is painted; one frame at a time stays in cache and the label map is the only large
    array. None (use :func:`seg_frames`) unless the pixels are native little-endian 1-bit frames
    that each start on a byte and all of them are there.
    """
    if header.segmentation_type != "BINARY" or header.bits_allocated != 1:
        return None
    syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if syntax is None or syntax.is_encapsulated or not syntax.is_little_endian or "PixelData" not in ds:
        return None
    rows, columns = header.rows, header.columns
    frames = header.number_of_frames
    if (
        rows <= 0
        or columns <= 0
        or (rows * columns) % 8
        or (header.seg_frames and len(header.seg_frames) != frames)
    ):
        return None
    data = ds.PixelData
    step = rows * columns // 8
    if not isinstance(data, bytes) or len(data) < frames * step:
        return None
    packed = np.frombuffer(data, dtype=np.uint8)

    def frame(i: int) -> np.ndarray:
        bits = np.unpackbits(packed[i * step : (i + 1) * step], bitorder="little")
        return bits.reshape(rows, columns).view(np.bool_)

    return frame


def seg_frames(ds: Dataset, header: InstanceHeader) -> np.ndarray:
    """Stored SEG frames as (frames, rows, columns); raises QuarantineError."""
    check_decodable(ds, header.url)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise QuarantineError(
            Reason.UNREADABLE, f"{header.url}: SEG pixel data cannot be decoded: {exc}"
        ) from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] != len(header.seg_frames) and header.seg_frames:
        raise QuarantineError(
            Reason.UNSUPPORTED_SEG,
            f"{header.url}: {arr.shape[0]} frames decoded, {len(header.seg_frames)} described per frame",
        )
    return arr


def frame_masks(
    frames: np.ndarray, header: InstanceHeader, labels: dict[int, int], config: BuildConfig
) -> list[list[tuple[int, np.ndarray]]]:
    """Per frame, the (label value, boolean mask) pairs it contributes."""
    kind = header.segmentation_type
    out: list[list[tuple[int, np.ndarray]]] = []
    if kind == "LABELMAP":
        lut = np.zeros(int(max(frames.max(initial=0), max(labels, default=0))) + 1, dtype=np.uint8)
        for number, value in labels.items():
            lut[number] = value
        for f in frames:
            mapped = lut[f]
            out.append([(v, mapped == v) for v in sorted(set(labels.values())) if v != BACKGROUND])
        return out
    if kind == "FRACTIONAL":
        max_value = header.max_fractional_value or 255
        cut = config.fractional_threshold * max_value
    elif kind != "BINARY":
        raise QuarantineError(Reason.UNSUPPORTED_SEG, f"SegmentationType {kind!r} is not handled")
    # BINARY frames decode to 0/1 bytes: use them as boolean views instead of a copy per frame.
    as_view = kind == "BINARY" and frames.dtype == np.uint8 and int(frames.max(initial=0)) <= 1
    for f, value in zip(frames, frame_values(header, len(frames), labels), strict=True):
        if value is None:
            out.append([])
            continue
        mask = f.view(np.bool_) if as_view else (f >= cut if kind == "FRACTIONAL" else f != 0)
        out.append([(value, mask)])
    return out


def frame_values(header: InstanceHeader, frames: int, labels: dict[int, int]) -> list[int | None]:
    """The label value each of a BINARY or FRACTIONAL SEG's frames paints (None: a segment we skip)."""
    only = header.segments[0].number if len(header.segments) == 1 else None
    out: list[int | None] = []
    for i in range(frames):
        number = header.seg_frames[i].segment_number if header.seg_frames else 0
        number = number or only or 0
        if number == 0:
            raise QuarantineError(
                Reason.UNSUPPORTED_SEG,
                f"{header.url}: frame {i + 1} names no ReferencedSegmentNumber and the SEG has "
                f"{len(header.segments)} segments; expected one number per frame",
            )
        out.append(labels.get(number))
    return out


def _same_plane_grid(header: InstanceHeader, geometry: Geometry, ct_orientation: Sequence[float]) -> bool:
    if header.orientation is None or header.pixel_spacing is None:
        return True  # nothing to contradict the source references
    if (header.rows, header.columns) != geometry.shape[1:]:
        return False
    if np.max(np.abs(np.subtract(header.orientation, ct_orientation))) > ORIENTATION_TOLERANCE:
        return False
    ct_ps = (geometry.spacing[1], geometry.spacing[2])
    return bool(np.max(np.abs(np.subtract(header.pixel_spacing, ct_ps))) <= PIXEL_SPACING_TOLERANCE_MM)


def labels_on_ct_grid(
    ds: Dataset,
    header: InstanceHeader,
    frame_slices: Sequence[int],
    slices: Sequence[SliceRef],
    geometry: Geometry,
    ct_orientation: Sequence[float],
    segment_labels: dict[int, int],
    config: BuildConfig,
    *,
    fast_binary: bool = True,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(uint8 label map on ``geometry``, warnings)."""
    ranks = priority_ranks(config.overlap_priority)
    label = np.zeros(geometry.shape, dtype=np.uint8)
    direct = _same_plane_grid(header, geometry, ct_orientation) and all(
        k < 0 or _on_slice(header, i, slices[k], config) for i, k in enumerate(frame_slices)
    )
    # Only native little-endian pixels with PixelData present take this path, which
    # check_decodable (in seg_frames, for all others) would pass.
    frame = binary_frame_reader(ds, header) if direct and fast_binary else None
    if frame is not None:
        values = frame_values(header, header.number_of_frames, segment_labels)
        jobs = [(k, values[i], i) for i, k in enumerate(frame_slices) if k >= 0 and values[i] is not None]
        paint_in_order(label, jobs, ranks, frame)  # type: ignore[arg-type]
        return label, ()
    frames = seg_frames(ds, header)
    masks = frame_masks(frames, header, segment_labels, config)
    if direct:
        paint_in_order(
            label,
            [(k, value, mask) for i, k in enumerate(frame_slices) if k >= 0 for value, mask in masks[i]],
            ranks,
        )
        return label, ()
    _resample_into(label, masks, header, geometry, ranks, config)
    return label, ("seg_resampled_to_ct_grid",)


def _on_slice(header: InstanceHeader, frame: int, s: SliceRef, config: BuildConfig) -> bool:
    pos = header.seg_frames[frame].position if header.seg_frames else None
    if pos is None:
        return True
    return bool(np.linalg.norm(np.subtract(pos, s.position)) <= config.position_tolerance_mm)


def _resample_into(
    label: np.ndarray,
    masks: list[list[tuple[int, np.ndarray]]],
    header: InstanceHeader,
    geometry: Geometry,
    ranks: np.ndarray,
    config: BuildConfig,
) -> None:
    if header.orientation is None or header.pixel_spacing is None:
        raise QuarantineError(
            Reason.UNSUPPORTED_SEG,
            "SEG lies off the CT grid and lacks ImageOrientationPatient or PixelSpacing",
        )
    positions = [fr.position for fr in header.seg_frames]
    if not positions or any(p is None for p in positions):
        raise QuarantineError(
            Reason.UNSUPPORTED_SEG, "SEG lies off the CT grid and some frames have no ImagePositionPatient"
        )
    row_cos = np.asarray(header.orientation[:3])
    col_cos = np.asarray(header.orientation[3:])
    normal = slice_normal(header.orientation)
    dr, dc = header.pixel_spacing
    # One 2-D label per distinct SEG plane, overlaps resolved with the same priority.
    planes: dict[tuple[float, float, float], np.ndarray] = {}
    for i, pos in enumerate(positions):
        key = tuple(round(v, 3) for v in pos)  # type: ignore[union-attr]
        plane = planes.setdefault(key, np.zeros((header.rows, header.columns), dtype=np.uint8))
        for value, mask in masks[i]:
            paint(plane, mask, value, ranks)
    keys = sorted(planes, key=lambda p: float(np.dot(p, normal)))
    origins = np.array(keys, dtype=np.float64)
    d_planes = origins @ normal
    step = header.spacing_between_slices or (
        float(np.median(np.diff(d_planes)))
        if len(d_planes) > 1
        else header.slice_thickness or geometry.spacing[0]
    )
    half = max(abs(step) / 2.0, config.position_tolerance_mm)
    stacked = np.stack([planes[k] for k in keys])
    nz, ny, nx = geometry.shape
    affine = geometry.affine
    jj = np.arange(ny, dtype=np.float64)[:, None]
    ii = np.arange(nx, dtype=np.float64)[None, :]
    step_j, step_i = affine[:3, 1], affine[:3, 2]
    # World position is affine in (j, i) on a CT slice, so every SEG coordinate is too: outer sums
    # of 1-D terms instead of a (ny * nx, 3) matrix product per slice.
    for z in range(nz):
        base = affine[:3, 3] + z * affine[:3, 0]
        d = float(base @ normal) + jj * float(step_j @ normal) + ii * float(step_i @ normal)
        p = _nearest_plane(d_planes, d)
        near = np.abs(d_planes[p] - d) <= half
        if not near.any():
            continue
        rel0 = base - origins[p]  # (ny, nx, 3) only through the plane index
        r = (rel0 @ col_cos + jj * float(step_j @ col_cos) + ii * float(step_i @ col_cos)) / dr
        c = (rel0 @ row_cos + jj * float(step_j @ row_cos) + ii * float(step_i @ row_cos)) / dc
        r = np.floor(r + 0.5).astype(np.int64)
        c = np.floor(c + 0.5).astype(np.int64)
        ok = near & (r >= 0) & (r < header.rows) & (c >= 0) & (c < header.columns)
        label[z][ok] = stacked[p[ok], r[ok], c[ok]]


def _nearest_plane(d_planes: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Index of the nearest plane offset for every value of ``d``; ties go to the higher offset."""
    p = np.clip(np.searchsorted(d_planes, d), 1, len(d_planes)) - 1
    if len(d_planes) > 1:
        nxt = np.minimum(p + 1, len(d_planes) - 1)
        p = np.where(np.abs(d_planes[nxt] - d) <= np.abs(d_planes[p] - d), nxt, p)
    return p

"""Series geometry: turn the CT instances of one series into ordered, checked slice stacks.

Order of checks for one series (:func:`series_stacks`):

1. every 2-D slice is listed, single-frame or one frame of a multi-frame instance;
2. the series is split into acquisitions by AcquisitionNumber when the acquisitions overlap
   along the slice normal (stacked phases, interleaved grids: HCC_008/010/011); acquisitions in
   disjoint ranges (a scanner numbering every rotation) stay one stack;
3. each acquisition is checked (:func:`check_stack`): same rows, columns, pixel spacing and
   orientation (``inconsistent_geometry``); ordered by position along the slice normal, never by
   InstanceNumber or file name; two slices at one position are ``duplicate_slice``; positions off
   the straight line along the normal are ``gantry_tilt``; steps that agree with the median step
   within ``spacing_tolerance`` (relative) or ``position_tolerance_mm`` are rounding jitter
   (HCC_021); a step of 1.5 median steps or more is a gap that splits the stack into contiguous
   blocks (:class:`Block`); any other step is ``non_uniform_spacing``.

Which block a SEG is decoded on is decided by the pairing (hcc_shards.dicom.pairing).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import InstanceHeader, Vec3
from hcc_shards.errors import QuarantineError
from hcc_shards.geometry import Geometry
from hcc_shards.quarantine import Reason

GAP_FACTOR = 1.5
"""A step at least this many median steps long is a gap (one or more missing slices)."""
TILT_SLOPE = 2e-3
"""Lateral drift (mm per mm along the normal) above which a stack counts as tilted or sheared."""
ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between two ImageOrientationPatient components still called equal."""
PIXEL_SPACING_TOLERANCE_MM = 1e-3
UNIT_TOLERANCE = 1e-3
"""Largest departure of an ImageOrientationPatient cosine's length from 1, and of the two cosines'
dot product from 0, still accepted (headers round the cosines to a few digits)."""

HEADER_CHECK_CODES = frozenset(
    {
        Reason.INVALID_PIXEL_SPACING,
        Reason.NON_FINITE_GEOMETRY,
        Reason.INVALID_ORIENTATION,
        Reason.INCONSISTENT_PIXEL_FORMAT,
        Reason.INCONSISTENT_DIMENSIONS,
        Reason.INCONSISTENT_FRAME_OF_REFERENCE,
        Reason.RESCALE_OUT_OF_RANGE,
    }
)
"""Reasons of :func:`check_headers` (recorded at stage 'series')."""


@dataclass(frozen=True)
class SliceRef:
    """One 2-D CT slice: a single-frame instance, or one frame of a multi-frame instance."""

    url: str
    sop_instance_uid: str
    frame: int
    """1-based frame number inside a multi-frame instance; 0 for a single-frame instance."""
    position: Vec3
    """ImagePositionPatient of the slice, LPS mm."""


@dataclass(frozen=True)
class Block:
    """A contiguous run ``slices[start:stop]`` of an ordered stack with a uniform step."""

    start: int
    stop: int
    step_mm: float
    """Mean distance between neighbouring slices along the normal (the stack's regular step for a
    one-slice block, 0 when the whole stack is one slice)."""

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Stack:
    """The ordered slices of one CT series and acquisition, checked, with their blocks."""

    series_instance_uid: str
    acquisition_number: int | None
    """AcquisitionNumber shared by the slices; None when absent, or when the series' numbers mark
    disjoint ranges rather than separate acquisitions (see :func:`split_acquisitions`)."""
    slices: tuple[SliceRef, ...]
    """Ordered by increasing position along the slice normal."""
    blocks: tuple[Block, ...]
    """Contiguous blocks separated by gaps; a single block when there is no gap."""
    rows: int
    columns: int
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    default_step_mm: float
    """Slice step of a one-slice stack (SpacingBetweenSlices, else SliceThickness, else 1 mm)."""

    def block_geometry(self, block: Block) -> Geometry:
        """Geometry of ``slices[block.start:block.stop]``."""
        step = block.step_mm if block.step_mm > 0 else self.default_step_mm
        return Geometry.from_dicom(
            shape=(block.size, self.rows, self.columns),
            image_orientation=self.orientation,
            first_position=self.slices[block.start].position,
            pixel_spacing=self.pixel_spacing,
            slice_step=step,
        )

    def block_of(self, index: int) -> int:
        """Index into ``blocks`` of the block that holds slice ``index``."""
        for b, block in enumerate(self.blocks):
            if block.start <= index < block.stop:
                return b
        raise IndexError(f"slice index {index} outside the stack of {len(self.slices)} slices")


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal (row cosine x column cosine) of ImageOrientationPatient."""
    iop = np.asarray(orientation, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise QuarantineError(
            Reason.INCONSISTENT_GEOMETRY, f"ImageOrientationPatient {list(orientation)} has parallel cosines"
        )
    return n / norm


def slices_of(header: InstanceHeader) -> list[SliceRef]:
    """The 2-D slices of one CT instance; raises when a position is missing."""
    multi = header.is_multiframe
    out = []
    for i, pos in enumerate(header.frame_positions):
        if pos is None:
            raise QuarantineError(
                Reason.INCONSISTENT_GEOMETRY,
                f"{header.url}: frame {i + 1} has no ImagePositionPatient; expected one per slice",
            )
        out.append(SliceRef(header.url, header.sop_instance_uid, i + 1 if multi else 0, pos))
    return out


def split_acquisitions(headers: Sequence[InstanceHeader]) -> dict[int | None, list[InstanceHeader]]:
    """Headers of one series grouped by AcquisitionNumber when the acquisitions overlap in space.

    Stacked phases (several acquisitions over the same positions, or interleaved z grids) are
    split. When the acquisitions occupy disjoint ranges along the slice normal (scanners that
    number each rotation or slice separately, like the pydicom CT2 series) the series is one
    stack, keyed ``None``.
    """
    groups: dict[int | None, list[InstanceHeader]] = defaultdict(list)
    for h in headers:
        groups[h.acquisition_number].append(h)
    if len(groups) == 1:
        return dict(groups)
    orientation = next((h.orientation for h in headers if h.orientation), None)
    if orientation is None or not all(math.isfinite(v) for v in orientation):
        return dict(groups)  # check_stack records what is wrong with each group
    try:
        normal = slice_normal(orientation)
    except QuarantineError:
        return dict(groups)
    extents = []
    for group in groups.values():
        d = [float(np.dot(p, normal)) for h in group for p in h.frame_positions if p is not None]
        if not d or not all(math.isfinite(v) for v in d):
            return dict(groups)
        extents.append((min(d), max(d)))
    extents.sort()
    disjoint = all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(extents))
    return {None: list(headers)} if disjoint else dict(groups)


def check_stack(
    headers: Sequence[InstanceHeader], config: BuildConfig, acquisition_number: int | None = None
) -> Stack:
    """Order and check the slices of one acquisition; raises :class:`QuarantineError`."""
    if not headers:
        raise ValueError("check_stack needs at least one header")
    check_headers(headers, config)
    first = headers[0]
    series_uid = first.series_instance_uid
    ref_iop = first.orientation
    ref_ps = first.pixel_spacing
    if ref_iop is None or ref_ps is None:
        raise QuarantineError(
            Reason.INCONSISTENT_GEOMETRY,
            f"series {series_uid}: {first.url} lacks ImageOrientationPatient or PixelSpacing",
        )
    for h in headers[1:]:
        _same_grid(first, h)
    slices = [s for h in headers for s in slices_of(h)]
    normal = slice_normal(ref_iop)
    pos = np.array([s.position for s in slices], dtype=np.float64)
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    pos, dist = pos[order], dist[order]

    steps = np.diff(dist)
    tol = config.position_tolerance_mm
    dup = np.flatnonzero(steps <= tol)
    if dup.size:
        a, b = slices[dup[0]], slices[dup[0] + 1]
        raise QuarantineError(
            Reason.DUPLICATE_SLICE,
            f"series {series_uid} acquisition {acquisition_number}: instances {a.sop_instance_uid} and "
            f"{b.sop_instance_uid} are both at {dist[dup[0]]:.3f} mm along the normal; expected one slice "
            "per position",
        )
    lateral = (pos - pos[0]) - np.outer(dist - dist[0], normal)
    drift = np.linalg.norm(lateral, axis=1)
    allowed = tol + TILT_SLOPE * np.abs(dist - dist[0])
    if np.any(drift > allowed):
        k = int(np.argmax(drift - allowed))
        raise QuarantineError(
            Reason.GANTRY_TILT,
            f"series {series_uid}: slice {k} lies {drift[k]:.3f} mm off the line along the slice normal "
            f"(allowed {allowed[k]:.3f} mm); gantry-tilted or sheared stacks are not resampled",
        )
    blocks = tuple(_blocks(steps, config, series_uid))
    default_step = first.spacing_between_slices or first.slice_thickness or 1.0
    return Stack(
        series_instance_uid=series_uid,
        acquisition_number=acquisition_number,
        slices=tuple(slices),
        blocks=blocks,
        rows=first.rows,
        columns=first.columns,
        orientation=tuple(ref_iop),
        pixel_spacing=ref_ps,
        default_step_mm=float(default_step) if default_step > 0 else 1.0,
    )


def check_headers(headers: Sequence[InstanceHeader], config: BuildConfig) -> None:
    """The headers' own geometry and pixel format, before any geometry object is built.

    Per slice: orientation, pixel spacing and positions finite (``non_finite_geometry``), pixel
    spacing > 0 (``invalid_pixel_spacing``), orientation cosines of unit length and orthogonal
    (``invalid_orientation``), and a rescale that maps some stored value into ``config.hu_clip``
    (``rescale_out_of_range``). Across the slices: one BitsAllocated / BitsStored /
    PixelRepresentation (``inconsistent_pixel_format``), one Rows x Columns
    (``inconsistent_dimensions``), one FrameOfReferenceUID (``inconsistent_frame_of_reference``).
    """
    first = headers[0]
    series = first.series_instance_uid
    for h in headers:
        values = [*(h.orientation or ()), *(h.pixel_spacing or ())]
        values += [v for p in h.frame_positions if p is not None for v in p]
        if not all(math.isfinite(v) for v in values):
            raise QuarantineError(
                Reason.NON_FINITE_GEOMETRY,
                f"series {series}: {h.url} has NaN or infinite geometry (ImageOrientationPatient "
                f"{h.orientation}, PixelSpacing {h.pixel_spacing}); expected finite numbers on every slice",
            )
        if h.pixel_spacing is not None and not all(v > 0 for v in h.pixel_spacing):
            raise QuarantineError(
                Reason.INVALID_PIXEL_SPACING,
                f"series {series}: {h.url} has PixelSpacing {list(h.pixel_spacing)}; expected two values > 0",
            )
        if h.orientation is not None:
            row, col = np.asarray(h.orientation[:3]), np.asarray(h.orientation[3:])
            lengths = (float(np.linalg.norm(row)), float(np.linalg.norm(col)))
            dot = float(np.dot(row, col))
            if max(abs(n - 1.0) for n in lengths) > UNIT_TOLERANCE or abs(dot) > UNIT_TOLERANCE:
                raise QuarantineError(
                    Reason.INVALID_ORIENTATION,
                    f"series {series}: {h.url} has ImageOrientationPatient {list(h.orientation)} (lengths "
                    f"{lengths[0]:.4f}, {lengths[1]:.4f}, dot {dot:.4f}); expected two orthogonal unit vectors",
                )
        _check_rescale_range(h, config, series)
    for h in headers[1:]:
        if (h.bits_allocated, h.bits_stored, h.pixel_representation) != (
            first.bits_allocated,
            first.bits_stored,
            first.pixel_representation,
        ):
            raise QuarantineError(
                Reason.INCONSISTENT_PIXEL_FORMAT,
                f"series {series}: {h.url} has BitsAllocated/BitsStored/PixelRepresentation "
                f"{h.bits_allocated}/{h.bits_stored}/{h.pixel_representation}, {first.url} has "
                f"{first.bits_allocated}/{first.bits_stored}/{first.pixel_representation}; expected one "
                "pixel format per series",
            )
        if (h.rows, h.columns) != (first.rows, first.columns):
            raise QuarantineError(
                Reason.INCONSISTENT_DIMENSIONS,
                f"series {series}: {h.url} is {h.rows}x{h.columns}, {first.url} is "
                f"{first.rows}x{first.columns}; expected one Rows x Columns per series",
            )
        if h.frame_of_reference_uid != first.frame_of_reference_uid:
            raise QuarantineError(
                Reason.INCONSISTENT_FRAME_OF_REFERENCE,
                f"series {series}: {h.url} has FrameOfReferenceUID {h.frame_of_reference_uid!r}, "
                f"{first.url} has {first.frame_of_reference_uid!r}; expected one per series",
            )


def _check_rescale_range(h: InstanceHeader, config: BuildConfig, series: str) -> None:
    slope, intercept = h.rescale_slope, h.rescale_intercept
    if slope is None or intercept is None or not 1 <= h.bits_stored <= 32:
        return  # absent or odd values are the decoder's to judge (invalid_rescale)
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise QuarantineError(
            Reason.INVALID_RESCALE,
            f"series {series}: {h.url} has RescaleSlope {slope}, RescaleIntercept {intercept}; expected "
            "finite values",
        )
    if h.pixel_representation == 1:
        lo, hi = -(2 ** (h.bits_stored - 1)), 2 ** (h.bits_stored - 1) - 1
    else:
        lo, hi = 0, 2**h.bits_stored - 1
    ends = sorted((lo * slope + intercept, hi * slope + intercept))
    clip_lo, clip_hi = config.hu_clip
    if ends[1] < clip_lo or ends[0] > clip_hi:
        raise QuarantineError(
            Reason.RESCALE_OUT_OF_RANGE,
            f"series {series}: {h.url}: RescaleSlope {slope:g} and RescaleIntercept {intercept:g} map the "
            f"stored range {lo}..{hi} to {ends[0]:g}..{ends[1]:g} HU, entirely outside the clip range "
            f"{clip_lo}..{clip_hi}; expected a rescale to Hounsfield units",
        )


def series_stacks(
    headers: Sequence[InstanceHeader], config: BuildConfig
) -> dict[int | None, Stack | QuarantineError]:
    """Every acquisition of one series: its stack, or why it is not one."""
    out: dict[int | None, Stack | QuarantineError] = {}
    for acq, group in split_acquisitions(headers).items():
        try:
            out[acq] = check_stack(group, config, acq)
        except QuarantineError as exc:
            out[acq] = exc
    return out


def _blocks(steps: np.ndarray, config: BuildConfig, series_uid: str) -> list[Block]:
    if steps.size == 0:
        return [Block(0, 1, 0.0)]
    base = _base_step(steps)
    allowed = max(config.position_tolerance_mm, config.spacing_tolerance * base)
    blocks: list[Block] = []
    start = 0
    for i, step in enumerate(steps):
        if abs(step - base) <= allowed:
            continue
        if step >= GAP_FACTOR * base:
            blocks.append(Block(start, i + 1, 0.0))
            start = i + 1
            continue
        raise QuarantineError(
            Reason.NON_UNIFORM_SPACING,
            f"series {series_uid}: step {i} is {step:.4f} mm, expected {base:.4f} mm +/- {allowed:.4f} mm",
        )
    blocks.append(Block(start, steps.size + 1, 0.0))
    out = []
    for b in blocks:
        inner = steps[b.start : b.stop - 1]
        out.append(Block(b.start, b.stop, float(inner.mean()) if inner.size else base))
    return out


def _base_step(steps: np.ndarray) -> float:
    """The regular step: the median of the steps near the smallest one, unless those are a minority.

    With a stray far slice (the pydicom CT2 series) the regular steps are the small ones; when the
    small steps are a minority of three or more, they are the irregular ones and the median of all
    steps is the regular step.
    """
    near_min = steps[steps < GAP_FACTOR * float(np.min(steps))]
    if steps.size >= 3 and 2 * near_min.size < steps.size:
        return float(np.median(steps))
    return float(np.median(near_min))


def _same_grid(ref: InstanceHeader, h: InstanceHeader) -> None:
    problems = []
    if (h.rows, h.columns) != (ref.rows, ref.columns):
        problems.append(f"rows x columns {h.rows}x{h.columns} != {ref.rows}x{ref.columns}")
    if (
        h.orientation is None
        or np.max(np.abs(np.subtract(h.orientation, ref.orientation))) > ORIENTATION_TOLERANCE
    ):
        problems.append(f"ImageOrientationPatient {h.orientation} != {ref.orientation}")
    if h.pixel_spacing is None or np.max(np.abs(np.subtract(h.pixel_spacing, ref.pixel_spacing))) > (
        PIXEL_SPACING_TOLERANCE_MM
    ):
        problems.append(f"PixelSpacing {h.pixel_spacing} != {ref.pixel_spacing}")
    if problems:
        raise QuarantineError(
            Reason.INCONSISTENT_GEOMETRY,
            f"series {ref.series_instance_uid}: {h.url} differs from {ref.url}: " + "; ".join(problems),
        )

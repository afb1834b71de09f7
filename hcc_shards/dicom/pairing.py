"""Pair every SEG of one patient with the CT series, acquisition and slices it annotates.

:func:`pair_patient` is pure: it sees the headers of one patient (the pipeline groups by
PatientID) and returns one :class:`Pairing` per usable SEG and a quarantine record for every
other SEG. A CT series that no SEG annotates yields nothing.

Rules, in order:

1. Series: the SEG's ReferencedSeriesSequence (``referenced_series``); without it (HCC_048) the
   series holding the instances the SEG names (``referenced_instances``); without those, a CT
   stack with the SEG's FrameOfReferenceUID, a parallel orientation and the most SEG frame
   positions on its slices, same study first (``frame_of_reference_geometry``).
2. Acquisition, when the series holds several (stacked phases): the one most SEG frames
   reference through their SourceImageSequence; a warning names the others. Without per-frame
   references, the referenced instances; without those, the frame positions.
3. Frames are placed on slices by source instance (and frame number), else by position.
   Frames that land nowhere are ``seg_references_absent_instances``.
4. Gaps: when the stack has gaps, the SEG is decoded on the contiguous block that holds most of
   its frames. Frames on a small stray block (at most 2 slices, or 10% of the main block) are
   dropped with a warning; a larger annotated block on the far side of a gap is
   ``missing_slice``.
5. Every SEG is its own annotation: several SEGs on one CT series and acquisition (a manual one
   and AI ones) each give a pairing, and share the stored image. Two SEG files with one
   SOPInstanceUID: the first by URL is kept, the second is ``duplicate_seg`` (two CT files with
   one SOPInstanceUID: ``duplicate_instance``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.segments import map_segments
from hcc_shards.dicom.stack import (
    HEADER_CHECK_CODES,
    Block,
    SliceRef,
    Stack,
    check_stack,
    slice_normal,
    split_acquisitions,
)
from hcc_shards.errors import QuarantineError
from hcc_shards.geometry import Geometry
from hcc_shards.quarantine import QuarantineRecord, Reason

_DEFAULT_CONFIG = BuildConfig()

METHOD_REFERENCED_SERIES = "referenced_series"
METHOD_REFERENCED_INSTANCES = "referenced_instances"
METHOD_FRAME_OF_REFERENCE = "frame_of_reference_geometry"

SERIES_CODES = frozenset(
    {
        Reason.INCONSISTENT_GEOMETRY,
        Reason.DUPLICATE_SLICE,
        Reason.GANTRY_TILT,
        Reason.NON_UNIFORM_SPACING,
        Reason.MISSING_SLICE,
        *HEADER_CHECK_CODES,
    }
)
"""Reasons found by the series geometry checks; their records carry stage 'series'."""

STRAY_BLOCK_SLICES = 2
STRAY_BLOCK_FRACTION = 0.1

AcqKey = tuple[str, int | None]


@dataclass(frozen=True)
class Pairing:
    """A SEG and the CT slices it will be decoded on; everything decode needs, nothing read yet."""

    seg: InstanceHeader
    ct_headers: tuple[InstanceHeader, ...]
    """The CT instances that hold ``slices``, in slice order."""
    slices: tuple[SliceRef, ...]
    """The chosen contiguous block of CT slices, ordered along the slice normal."""
    geometry: Geometry
    """CT grid of ``slices`` (z, y, x)."""
    acquisition_number: int | None
    method: str
    """How the CT series was found: referenced_series, referenced_instances, frame_of_reference_geometry."""
    frame_slices: tuple[int, ...]
    """For each SEG frame (stored order), the index into ``slices`` it was placed on, or -1 when
    the frame lies outside the chosen block (dropped with a warning) or must be resampled."""
    segment_labels: tuple[tuple[int, int], ...]
    """(SegmentNumber, label value) of the known segments."""
    unknown_segments: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    phase_sources: tuple = ()
    """The other acquisitions of the study to store as channels (hcc_shards.dicom.phase_sources
    ``PhaseSource``); empty unless the build asks for phases (``BuildConfig.phases``)."""

    @property
    def ct_series_instance_uid(self) -> str:
        return self.ct_headers[0].series_instance_uid

    @property
    def patient_id(self) -> str:
        return self.seg.patient_id

    @property
    def image_key(self) -> tuple[str, int | None, str]:
        """(CT series, acquisition, slice block): pairings with one key share one stored image."""
        first = self.slices[0]
        return (
            self.ct_series_instance_uid,
            self.acquisition_number,
            f"{first.sop_instance_uid}:{first.frame}:{len(self.slices)}",
        )


@dataclass(frozen=True)
class _Placement:
    stack_index: tuple[int, ...]
    """Per SEG frame: index into the stack's slices, or -1 when not placed."""
    by_uid: int
    unplaced_named: int
    unplaced: int


class _PatientIndex:
    """Lookups over one patient's CT headers, built once per :func:`pair_patient` call."""

    def __init__(self, cts: Sequence[InstanceHeader], config: BuildConfig) -> None:
        self.config = config
        self.series: dict[str, list[InstanceHeader]] = defaultdict(list)
        for h in cts:
            self.series[h.series_instance_uid].append(h)
        self.stacks: dict[AcqKey, Stack | QuarantineError] = {}
        self.headers: dict[AcqKey, list[InstanceHeader]] = {}
        self.acq_of: dict[str, AcqKey] = {}
        for uid in sorted(self.series):
            for acq, group in split_acquisitions(self.series[uid]).items():
                key = (uid, acq)
                self.stacks[key] = _checked(group, config, acq)
                self.headers[key] = group
                for h in group:
                    self.acq_of[h.sop_instance_uid] = key

    def acquisitions(self, series_uid: str) -> list[AcqKey]:
        return sorted((k for k in self.stacks if k[0] == series_uid), key=_acq_sort)


def _checked(group: list[InstanceHeader], config: BuildConfig, acq: int | None) -> Stack | QuarantineError:
    try:
        return check_stack(group, config, acq)
    except QuarantineError as exc:
        return exc


def _acq_sort(key: AcqKey) -> tuple[str, int, int]:
    return (key[0], key[1] is None, key[1] or 0)


def pair_patient(
    headers: Sequence[InstanceHeader], config: BuildConfig = _DEFAULT_CONFIG
) -> tuple[list[Pairing], list[QuarantineRecord]]:
    """Pair every SEG among ``headers`` (one patient) with its CT; see the module docstring."""
    records: list[QuarantineRecord] = []
    unique = _dedupe(headers, records)
    segs = sorted((h for h in unique if h.is_seg), key=lambda h: (h.series_number or 0, h.sop_instance_uid))
    index = _PatientIndex([h for h in unique if not h.is_seg], config)
    pairings: list[Pairing] = []
    for seg in segs:
        try:
            pairing = _pair_one(seg, index, config)
        except QuarantineError as exc:
            stage = "series" if exc.code in SERIES_CODES else "pair"
            records.append(seg.quarantine(exc.code, exc.message, stage))
            continue
        pairings.append(pairing)
    return pairings, records


def _dedupe(headers: Sequence[InstanceHeader], records: list[QuarantineRecord]) -> list[InstanceHeader]:
    seen: dict[str, InstanceHeader] = {}
    for h in sorted(headers, key=lambda h: h.url):
        if h.sop_instance_uid in seen:
            code = Reason.DUPLICATE_SEG if h.is_seg else Reason.DUPLICATE_INSTANCE
            records.append(
                h.quarantine(
                    code.value,
                    f"SOPInstanceUID {h.sop_instance_uid} already read from {seen[h.sop_instance_uid].url}; "
                    "expected one file per instance (the first by URL is kept)",
                    "pair",
                )
            )
            continue
        seen[h.sop_instance_uid] = h
    return list(seen.values())


def _pair_one(seg: InstanceHeader, index: _PatientIndex, config: BuildConfig) -> Pairing:
    if not seg.seg_frames:
        raise QuarantineError(
            Reason.UNSUPPORTED_SEG,
            f"SEG {seg.sop_instance_uid} has no PerFrameFunctionalGroupsSequence; expected one item per frame",
        )
    if seg.segmentation_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise QuarantineError(
            Reason.UNSUPPORTED_SEG,
            f"SegmentationType {seg.segmentation_type!r}; expected BINARY, FRACTIONAL or LABELMAP",
        )
    mapping = map_segments(seg.segments, config)
    if not mapping.labels:
        raise QuarantineError(
            Reason.NO_KNOWN_SEGMENT,
            f"none of the segments {list(mapping.unknown)} maps to a known label by code or label text",
        )
    warnings: list[str] = []
    key, method = _choose_acquisition(seg, index, warnings)
    stack = index.stacks[key]
    if isinstance(stack, QuarantineError):
        raise stack
    ct_for = index.headers[key][0].frame_of_reference_uid
    if seg.frame_of_reference_uid and ct_for and seg.frame_of_reference_uid != ct_for:
        raise QuarantineError(
            Reason.FRAME_OF_REFERENCE_MISMATCH,
            f"SEG FrameOfReferenceUID {seg.frame_of_reference_uid} != CT series {key[0]} "
            f"FrameOfReferenceUID {ct_for}",
        )
    placement = _place_frames(seg, stack, config)
    if placement.unplaced:
        raise QuarantineError(
            Reason.SEG_REFERENCES_ABSENT_INSTANCES,
            f"{placement.unplaced} of {len(seg.seg_frames)} SEG frames land on no slice of CT series {key[0]} "
            f"acquisition {key[1]} ({placement.unplaced_named} name instances that are not in the input); "
            "expected every frame to reference a present slice or lie on one",
        )
    block = _choose_block(stack, placement, warnings)
    n_voxels = block.size * stack.rows * stack.columns
    if n_voxels > config.max_voxels:
        raise QuarantineError(
            Reason.IMAGE_TOO_LARGE, f"CT block of {n_voxels} voxels exceeds max_voxels={config.max_voxels}"
        )
    slices = stack.slices[block.start : block.stop]
    by_uid = {h.sop_instance_uid: h for h in index.headers[key]}
    ct_headers = tuple(by_uid[u] for u in dict.fromkeys(s.sop_instance_uid for s in slices))
    frame_slices = tuple(
        i - block.start if block.start <= i < block.stop else -1 for i in placement.stack_index
    )
    return Pairing(
        seg=seg,
        ct_headers=ct_headers,
        slices=slices,
        geometry=stack.block_geometry(block),
        acquisition_number=key[1],
        method=method,
        frame_slices=frame_slices,
        segment_labels=mapping.labels,
        unknown_segments=mapping.unknown,
        warnings=tuple(warnings),
    )


def _choose_acquisition(seg: InstanceHeader, index: _PatientIndex, warnings: list[str]) -> tuple[AcqKey, str]:
    ref_series = [rs.series_instance_uid for rs in seg.referenced_series if rs.series_instance_uid]
    frame_refs = [uid for fr in seg.seg_frames for uid, _ in fr.sources]
    named = sorted(seg.referenced_instance_uids)
    present = [u for u in dict.fromkeys(ref_series) if u in index.series]
    if present:
        method = METHOD_REFERENCED_SERIES
        series_votes = Counter(index.acq_of[u][0] for u in frame_refs if u in index.acq_of)
        series_uid = max(present, key=lambda u: (series_votes.get(u, 0), -present.index(u)))
    elif any(u in index.acq_of for u in named):
        method = METHOD_REFERENCED_INSTANCES
        votes = Counter(index.acq_of[u][0] for u in named if u in index.acq_of)
        series_uid = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    elif ref_series:
        raise QuarantineError(
            Reason.SEG_WITHOUT_CT,
            f"SEG references CT series {ref_series} and {len(named)} instances; none of them is among the "
            f"{len(index.series)} CT series of patient {seg.patient_id!r} in the input",
        )
    else:
        return _match_by_geometry(seg, index, warnings), METHOD_FRAME_OF_REFERENCE
    acqs = index.acquisitions(series_uid)
    if len(acqs) == 1:
        return acqs[0], method
    votes = Counter(
        index.acq_of[u] for u in frame_refs if u in index.acq_of and index.acq_of[u][0] == series_uid
    )
    if not votes:
        votes = Counter(
            index.acq_of[u] for u in named if u in index.acq_of and index.acq_of[u][0] == series_uid
        )
    by_position = not votes
    if by_position:
        n = len(seg.seg_frames) + 1
        scores = {k: _position_score(seg, index.stacks[k], index.config) for k in acqs}
        votes = Counter({k: exact * n + within for k, (exact, within) in scores.items()})
    ranked = sorted(votes.items(), key=lambda kv: (-kv[1], _acq_sort(kv[0])))
    chosen = ranked[0][0]
    referenced = [k for k, v in ranked if v > 0]
    if by_position:
        tied = [k for k, v in ranked if v == ranked[0][1]]
        if len(tied) > 1:
            warnings.append(f"acquisition_chosen_by_position:{chosen[1]}_of_{len(tied)}_tied")
    elif len(referenced) > 1:
        others = ",".join(str(k[1]) for k in referenced[1:])
        warnings.append(
            f"seg_frames_reference_{len(referenced)}_acquisitions:chose_{chosen[1]}_over_{others}"
        )
    return chosen, method


def _position_score(
    seg: InstanceHeader, stack: Stack | QuarantineError, config: BuildConfig
) -> tuple[int, int]:
    """(frames on a slice plane, frames within the stack's extent) along the stack's normal."""
    if isinstance(stack, QuarantineError):
        return (0, 0)
    positions = [fr.position for fr in seg.seg_frames if fr.position is not None]
    if not positions:
        return (0, 0)
    normal = slice_normal(stack.orientation)
    slice_pos = np.array([s.position for s in stack.slices])
    d_slices = slice_pos @ normal
    exact = within = 0
    half = max(_typical_step(stack) / 2.0, config.position_tolerance_mm)
    for p in positions:
        d = float(np.dot(p, normal))
        k = int(np.argmin(np.abs(d_slices - d)))
        if abs(d_slices[k] - d) <= half:
            within += 1
            if np.linalg.norm(np.subtract(p, slice_pos[k])) <= config.position_tolerance_mm:
                exact += 1
    return exact, within


def _typical_step(stack: Stack) -> float:
    steps = [b.step_mm for b in stack.blocks if b.step_mm > 0]
    return float(np.median(steps)) if steps else stack.default_step_mm


def _match_by_geometry(seg: InstanceHeader, index: _PatientIndex, warnings: list[str]) -> AcqKey:
    if not seg.frame_of_reference_uid:
        raise QuarantineError(
            Reason.SEG_WITHOUT_CT,
            "SEG has no ReferencedSeriesSequence, no instance references and no FrameOfReferenceUID",
        )
    scored = []
    same_for = 0
    seg_normal = slice_normal(seg.orientation) if seg.orientation else None
    for key in sorted(index.stacks, key=_acq_sort):
        stack = index.stacks[key]
        if isinstance(stack, QuarantineError):
            continue
        if index.headers[key][0].frame_of_reference_uid != seg.frame_of_reference_uid:
            continue
        same_for += 1
        if (
            seg_normal is not None
            and abs(float(np.dot(seg_normal, slice_normal(stack.orientation)))) < 1 - 1e-4
        ):
            continue
        exact, within = _position_score(seg, stack, index.config)
        if within:
            same_study = index.headers[key][0].study_instance_uid == seg.study_instance_uid
            scored.append(((same_study, exact, within), key))
    if not scored:
        raise QuarantineError(
            Reason.SEG_WITHOUT_CT,
            f"SEG has no series reference; {same_for} CT stacks share its FrameOfReferenceUID "
            f"{seg.frame_of_reference_uid} but none lies under its frames",
        )
    best = max(score for score, _ in scored)
    winners = [key for score, key in scored if score == best]
    if len(winners) > 1:
        warnings.append(f"frame_of_reference_match_ambiguous:{len(winners)}_stacks")
    return winners[0]


def _place_frames(seg: InstanceHeader, stack: Stack, config: BuildConfig) -> _Placement:
    lookup: dict[tuple[str, int], int] = {
        (s.sop_instance_uid, s.frame): i for i, s in enumerate(stack.slices)
    }
    normal = slice_normal(stack.orientation)
    d_slices = np.array([s.position for s in stack.slices]) @ normal
    half = max(_typical_step(stack) / 2.0, config.position_tolerance_mm)
    placed: list[int] = []
    by_uid = unplaced = unplaced_named = 0
    for fr in seg.seg_frames:
        hit = next((k for k in (_source_slice(lookup, uid, fn) for uid, fn in fr.sources) if k >= 0), -1)
        if hit >= 0:
            by_uid += 1
        elif fr.position is not None:
            d = float(np.dot(fr.position, normal))
            k = int(np.argmin(np.abs(d_slices - d)))
            hit = k if abs(d_slices[k] - d) <= half else -1
        if hit < 0:
            unplaced += 1
            unplaced_named += bool(fr.sources)
        placed.append(hit)
    return _Placement(tuple(placed), by_uid, unplaced_named, unplaced)


def _source_slice(lookup: dict[tuple[str, int], int], uid: str, frame: int) -> int:
    """Slice index of a (SOPInstanceUID, ReferencedFrameNumber) source; -1 when not in the stack.

    A single-frame slice is keyed with frame 0; SEGs may name it with frame 0 or 1. A multi-frame
    instance named without a frame number is ambiguous and placed by position instead.
    """
    if (uid, frame) in lookup:
        return lookup[(uid, frame)]
    if frame == 1 and (uid, 0) in lookup:
        return lookup[(uid, 0)]
    return -1


def _choose_block(stack: Stack, placement: _Placement, warnings: list[str]) -> Block:
    if len(stack.blocks) == 1:
        return stack.blocks[0]
    frames_per_block = Counter(stack.block_of(i) for i in placement.stack_index if i >= 0)
    main = max(frames_per_block, key=lambda b: (frames_per_block[b], stack.blocks[b].size, -b))
    block = stack.blocks[main]
    dropped = 0
    for b, n in sorted(frames_per_block.items()):
        if b == main:
            continue
        other = stack.blocks[b]
        if other.size > max(STRAY_BLOCK_SLICES, STRAY_BLOCK_FRACTION * block.size):
            lo, hi = sorted((b, main))
            gap_mm = float(
                np.linalg.norm(
                    np.subtract(
                        stack.slices[stack.blocks[hi].start].position,
                        stack.slices[stack.blocks[lo].stop - 1].position,
                    )
                )
            )
            raise QuarantineError(
                Reason.MISSING_SLICE,
                f"SEG frames lie on both sides of a {gap_mm:.2f} mm gap in CT series {stack.series_instance_uid} "
                f"(blocks of {block.size} and {other.size} slices); expected a contiguous annotated range",
            )
        dropped += n
    warnings.append(f"ct_stack_has_gap:decoded_block_of_{block.size}_of_{len(stack.slices)}_slices")
    if dropped:
        warnings.append(f"seg_frames_on_stray_slices_dropped:{dropped}")
    return block

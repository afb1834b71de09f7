"""The other acquisitions of an annotated CT's study: the candidate contrast-phase channels.

:func:`phase_sources` is pure: from one patient's headers and one pairing it returns every other CT
acquisition block (series x AcquisitionNumber, stacked phases included) of the same study and
FrameOfReferenceUID that could be resampled onto the annotated image. Localizers, derived images
(reformats, MIPs: ImageType DERIVED) and single-slice stacks are left out; an acquisition whose
slices fail the stack checks is left out with a note, never quarantined (the annotation does not
depend on it). Nothing is read: the build decodes the sources (hcc_shards.channels).

There is no registration: one FrameOfReferenceUID means the scanner put every acquisition in the
same patient coordinates. A patient who moved between acquisitions is flagged by the consistency
check of hcc_shards.channels, not corrected.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.pairing import Pairing
from hcc_shards.dicom.stack import SliceRef, series_stacks
from hcc_shards.errors import QuarantineError
from hcc_shards.geometry import Geometry


@dataclass(frozen=True)
class PhaseSource:
    """One acquisition block to decode and resample as a channel of an annotated image."""

    series_instance_uid: str
    acquisition_number: int | None
    ct_headers: tuple[InstanceHeader, ...]
    """The CT instances that hold ``slices``."""
    slices: tuple[SliceRef, ...]
    """The largest contiguous block of the acquisition, in slice order."""
    geometry: Geometry
    """Grid of ``slices``."""

    @property
    def first(self) -> InstanceHeader:
        return self.ct_headers[0]

    @property
    def key(self) -> str:
        """``<SeriesInstanceUID>:<AcquisitionNumber>`` ('' for an unnumbered acquisition)."""
        acq = "" if self.acquisition_number is None else str(self.acquisition_number)
        return f"{self.series_instance_uid}:{acq}"


def phase_sources(
    pairing: Pairing, headers: Sequence[InstanceHeader], config: BuildConfig
) -> tuple[tuple[PhaseSource, ...], tuple[str, ...]]:
    """(The other acquisitions of ``pairing``'s study and frame of reference, notes on those left out).

    Ordered by (SeriesNumber, SeriesInstanceUID, AcquisitionNumber)."""
    ct = pairing.ct_headers[0]
    annotated = (ct.series_instance_uid, pairing.acquisition_number)
    by_series: dict[str, list[InstanceHeader]] = defaultdict(list)
    seen: set[str] = set()
    for h in sorted(headers, key=lambda h: h.url):
        if h.is_seg or h.sop_instance_uid in seen:
            continue
        seen.add(h.sop_instance_uid)
        if (
            h.study_instance_uid != ct.study_instance_uid
            or h.frame_of_reference_uid != ct.frame_of_reference_uid
        ):
            continue
        if not ct.frame_of_reference_uid:
            continue  # no frame of reference: nothing says the grids share patient coordinates
        kinds = {v.upper() for v in h.image_type}
        if "LOCALIZER" in kinds or (h.image_type and h.image_type[0].upper() == "DERIVED"):
            continue
        by_series[h.series_instance_uid].append(h)
    out: list[PhaseSource] = []
    notes: list[str] = []
    order = sorted(by_series, key=lambda u: (by_series[u][0].series_number or 0, u))
    for uid in order:
        for acq, stack in sorted(series_stacks(by_series[uid], config).items(), key=lambda kv: kv[0] or 0):
            if (uid, acq) == annotated:
                continue
            if isinstance(stack, QuarantineError):
                notes.append(f"phase_source_skipped:{uid}:{acq}:{stack.code}")
                continue
            block = max(stack.blocks, key=lambda b: (b.size, -b.start))
            if block.size < 2:
                continue
            if block.size * stack.rows * stack.columns > config.max_voxels:
                notes.append(f"phase_source_skipped:{uid}:{acq}:image_too_large")
                continue
            slices = stack.slices[block.start : block.stop]
            by_uid = {h.sop_instance_uid: h for h in by_series[uid]}
            out.append(
                PhaseSource(
                    series_instance_uid=uid,
                    acquisition_number=acq,
                    ct_headers=tuple(by_uid[u] for u in dict.fromkeys(s.sop_instance_uid for s in slices)),
                    slices=tuple(slices),
                    geometry=stack.block_geometry(block),
                )
            )
    return tuple(out), tuple(notes)

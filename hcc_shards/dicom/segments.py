"""SEG segment -> label value, by SNOMED CT code first and label text second.

``BuildConfig.segment_codes`` maps 'SCHEME:CODE' of the SegmentedPropertyTypeCodeSequence to a
label; SNOMED CT codes are also tried under the other SNOMED scheme designator ('SCT' and the
legacy 'SRT' both name SNOMED). When no code matches, the SegmentLabel text (lower case,
whitespace collapsed) is looked up in ``BuildConfig.segment_synonyms``, then the CodeMeaning.
Segments that match nothing are unknown: they are reported, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.header import Segment
from hcc_shards.labels import BACKGROUND


@dataclass(frozen=True)
class SegmentMapping:
    """Where each segment of one SEG goes."""

    labels: tuple[tuple[int, int], ...]
    """(SegmentNumber, label value) of every segment that maps to a known label."""
    unknown: tuple[str, ...]
    """'<number>:<label> (<scheme:code> <meaning>)' of each segment that maps to nothing."""
    matched_by: tuple[tuple[int, str], ...]
    """(SegmentNumber, 'code' or 'text') for the mapped segments."""

    def as_dict(self) -> dict[int, int]:
        return dict(self.labels)


def _norm_text(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


def label_for_segment(segment: Segment, config: BuildConfig) -> tuple[int, str] | None:
    """(label value, 'code' or 'text') for one segment, or None when it is unknown."""
    codes = dict(config.segment_codes)
    if segment.property_type:
        scheme, _, value = segment.property_type.partition(":")
        candidates = [segment.property_type]
        if scheme in ("SCT", "SRT"):
            candidates.append(f"{'SRT' if scheme == 'SCT' else 'SCT'}:{value}")
        for key in candidates:
            if key in codes:
                return int(codes[key]), "code"
    synonyms = {_norm_text(k): int(v) for k, v in config.segment_synonyms}
    for text in (segment.label, segment.property_meaning):
        key = _norm_text(text)
        if key in synonyms:
            return synonyms[key], "text"
    return None


def map_segments(segments: Sequence[Segment], config: BuildConfig) -> SegmentMapping:
    """Map every segment of a SEG; a LABELMAP background segment (type DCM:125040) is skipped."""
    labels, unknown, how = [], [], []
    for seg in segments:
        if seg.property_type == "DCM:125040" or (seg.number == 0 and _norm_text(seg.label) == "background"):
            continue
        hit = label_for_segment(seg, config)
        if hit is None or hit[0] == BACKGROUND:
            code = f" ({seg.property_type} {seg.property_meaning})".rstrip() if seg.property_type else ""
            unknown.append(f"{seg.number}:{seg.label}{code}")
            continue
        labels.append((seg.number, hit[0]))
        how.append((seg.number, hit[1]))
    return SegmentMapping(tuple(labels), tuple(unknown), tuple(how))

"""Where an annotation comes from: the ``annotation_source`` rule, and what a SEG says of itself.

numpy-free, no DICOM import: the rule is a pure function of header text, so the reader side and the
card can use the constants too.

The rule (:func:`annotation_source`, docs/FORMAT.md "Annotation source"), first match wins:

1. The SeriesDescription says the segmentation was corrected (a word ``corrected``/``correction``)
   **and** something says a prediction was corrected (an AI word in SeriesDescription or
   ContentCreatorName, an IDC analysis result id, or a segment typed AUTOMATIC or SEMIAUTOMATIC):
   ``ai_corrected``.
2. Every segment is SegmentAlgorithmType AUTOMATIC, or none is typed and an AI word is in the
   SeriesDescription or ContentCreatorName: ``ai``.
3. Every segment is MANUAL or SEMIAUTOMATIC (a person drew or finished it), no AI word, no
   "corrected", and the SEG is not part of an IDC analysis result: ``manual``.
4. Anything else (no typed segment and no AI word, AUTOMATIC mixed with MANUAL, an AI word on a
   SEG typed MANUAL, a MANUAL SEG inside an analysis result, "corrected" with nothing corrected):
   ``unknown``, with the reason. Unknown is never guessed as manual.

AI words (whole words, case-insensitive): ``ai``, ``aimi``, ``nnunet``/``nn-unet``/``nnu-net``,
``deep learning``, ``prediction``/``predicted``, ``model``, ``algorithm``, ``automatic``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ANNOTATION_SOURCES",
    "SOURCE_AI",
    "SOURCE_AI_CORRECTED",
    "SOURCE_MANUAL",
    "SOURCE_PREDICTION",
    "SOURCE_UNKNOWN",
    "SourceDecision",
    "annotation_source",
    "parse_sources",
]

SOURCE_MANUAL = "manual"
SOURCE_AI = "ai"
SOURCE_AI_CORRECTED = "ai_corrected"
SOURCE_UNKNOWN = "unknown"
ANNOTATION_SOURCES: tuple[str, ...] = (SOURCE_MANUAL, SOURCE_AI, SOURCE_AI_CORRECTED, SOURCE_UNKNOWN)
"""Every source a SEG can have (the rule's outcomes, what ``--annotation-sources`` selects), in
display order."""
SOURCE_PREDICTION = "prediction"
"""Source of a label image written back from a model (``hcc-shards predictions add``), never of a SEG:
its rows live in ``predictions/<name>.parquet`` (docs/FORMAT.md, "Predictions")."""

_AI_WORDS = re.compile(
    r"\b(ai|aimi|nn-?u-?net|deep[ -]learning|predict(ion|ed)?|model|algorithm|automatic)\b", re.IGNORECASE
)
_CORRECTED = re.compile(r"\bcorrect(ed|ion)\b", re.IGNORECASE)
_PERSON_TYPES = frozenset({"MANUAL", "SEMIAUTOMATIC"})


@dataclass(frozen=True)
class SourceDecision:
    """The outcome of the rule for one SEG."""

    source: str
    """One of :data:`ANNOTATION_SOURCES`."""
    reason: str
    """Which clause of the rule decided (for ``unknown``: why the source cannot be told)."""


def annotation_source(
    algorithm_types: Iterable[str],
    series_description: str = "",
    content_creator: str = "",
    analysis_result_id: str = "",
) -> SourceDecision:
    """The source of one SEG from its segments' SegmentAlgorithmType values and its header text."""
    types = {t.strip().upper() for t in algorithm_types if t and t.strip()}
    ai_word = bool(_AI_WORDS.search(series_description or "") or _AI_WORDS.search(content_creator or ""))
    corrected = bool(_CORRECTED.search(series_description or ""))
    derived = bool(analysis_result_id)
    if corrected:
        if ai_word or derived or types & {"AUTOMATIC", "SEMIAUTOMATIC"}:
            return SourceDecision(SOURCE_AI_CORRECTED, "series description says a prediction was corrected")
        return SourceDecision(SOURCE_UNKNOWN, "series description says corrected, but nothing says of what")
    if types == {"AUTOMATIC"}:
        return SourceDecision(SOURCE_AI, "every segment is SegmentAlgorithmType AUTOMATIC")
    if not types and ai_word:
        return SourceDecision(SOURCE_AI, "no SegmentAlgorithmType; the description or creator names an AI")
    if types and types <= _PERSON_TYPES and not ai_word and not derived:
        return SourceDecision(SOURCE_MANUAL, f"every segment is {'/'.join(sorted(types))}")
    if not types:
        return SourceDecision(SOURCE_UNKNOWN, "no segment has a SegmentAlgorithmType and no text names an AI")
    if "AUTOMATIC" in types:
        return SourceDecision(SOURCE_UNKNOWN, f"segments mix SegmentAlgorithmType {sorted(types)}")
    if ai_word:
        return SourceDecision(SOURCE_UNKNOWN, f"segments are {sorted(types)} but the description names an AI")
    if derived:
        return SourceDecision(
            SOURCE_UNKNOWN, f"segments are {sorted(types)} inside analysis result {analysis_result_id!r}"
        )
    return SourceDecision(SOURCE_UNKNOWN, f"SegmentAlgorithmType {sorted(types)} is not a known value")


def parse_sources(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"manual,ai_corrected"`` (or a list) -> sources in :data:`ANNOTATION_SOURCES` order; all for None/''."""
    if text is None or text == "" or text == "all":
        return ANNOTATION_SOURCES
    items = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    bad = [p for p in items if p not in ANNOTATION_SOURCES]
    if bad or not items:
        raise ValueError(f"annotation sources must be among {list(ANNOTATION_SOURCES)}, got {items!r}")
    return tuple(s for s in ANNOTATION_SOURCES if s in items)

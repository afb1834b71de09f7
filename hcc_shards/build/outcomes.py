"""What the stages hand to the commit: one small class per kind of outcome.

Outcomes travel as data (through any engine's shuffle) to the single commit, which computes the
summary from them; nothing that must be reported goes through an engine's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from hcc_shards.build.index import IndexStats
from hcc_shards.build.target import BuildTarget
from hcc_shards.features import FeatureRow
from hcc_shards.quarantine import QuarantineRecord
from hcc_shards.shards.manifest import ManifestRow


@dataclass(frozen=True)
class Started:
    """The one outcome every build has, so that the commit runs on an input with nothing in it."""


@dataclass(frozen=True)
class CaseBuilt:
    """A case written by this run, or found complete and kept (``resumed``)."""

    row: ManifestRow
    """The case's manifest row."""
    resumed: bool = False
    """The case was already complete and was not rewritten."""
    bytes_read: int = 0
    """Bytes read from the input for this case (an image's bytes count once, on its first case)."""
    bytes_written: int = 0
    """Bytes written to the output for this case (likewise)."""
    seconds: float = 0.0
    """Worker time spent on this case."""
    features: tuple[FeatureRow, ...] = ()
    """With BuildConfig.features: the case's radiomics features."""
    hu_histogram: tuple[tuple[int, int], ...] = ()
    """(HU, voxels) over the case's labelled voxels (hcc_shards.shards.intensity)."""


@dataclass(frozen=True)
class Quarantined:
    """A file, SEG or case set aside, with its reason."""

    record: QuarantineRecord


@dataclass(frozen=True)
class Indexed:
    """Listing and header totals (summed over workers)."""

    stats: IndexStats


@dataclass(frozen=True)
class TargetResolved:
    """The build's resolved target."""

    target: BuildTarget


Outcome = Started | CaseBuilt | Quarantined | Indexed | TargetResolved
"""Anything the commit gathers."""


def is_record(item: object) -> bool:
    """True for a QuarantineRecord (a filter that splits a stage's results from its records)."""
    return isinstance(item, QuarantineRecord)


def is_not_record(item: object) -> bool:
    return not isinstance(item, QuarantineRecord)


def start_outcome(_: object = None) -> Started:
    return Started()


def quarantine_outcome(record: QuarantineRecord) -> Quarantined:
    return Quarantined(record)


def index_outcome(stats: IndexStats) -> Indexed:
    return Indexed(stats)


def target_outcome(target: BuildTarget) -> TargetResolved:
    return TargetResolved(target)

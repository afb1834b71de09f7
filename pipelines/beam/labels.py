"""Labels of the Beam graph that the Dask translation tells apart (:mod:`pipelines.beam.runners`)."""

from __future__ import annotations

SHUFFLE, ONE_KEY, SPREAD = "shuffle", "one_key", "spread"
"""Kinds of GroupByKey, for the Dask translation (``fewer_partitions_group_by_key``)."""

ONE_KEY_GROUPS = frozenset(
    {"Sum index stats", "First cases", "All spacings", "Group with target", "All outcomes"}
)
"""Steps of the build that group every element under one key (the global combines and the
target join)."""
SPREAD_GROUP = "Spread group"
"""Label of the GroupByKey inside :class:`pipelines.beam.transforms.Spread`."""


def group_kind(full_label: str) -> str:
    """The kind of a GroupByKey of this pipeline, by its full label (the Dask translation
    partitions Dask's shuffles by it): spread, one key, or an ordinary shuffle."""
    parts = full_label.split("/")
    if SPREAD_GROUP in parts:
        return SPREAD
    if any(part in ONE_KEY_GROUPS for part in parts):
        return ONE_KEY
    return SHUFFLE

"""The cohort's foreground intensity fingerprint, as nnU-Net's ``dataset_fingerprint.json``
``foreground_intensity_properties_per_channel``: HU mean, std, median, min, max and the 0.5th
and 99.5th percentiles over the labelled (non-background) voxels of every case, stored grid.

Each case contributes an exact sparse histogram of its foreground HU values (int16, so a few
thousand (value, count) pairs at most); histograms travel with the case outcomes and are summed
at the commit, so the cohort numbers are exact (nnU-Net samples 10,000 voxels per case instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["Histogram", "foreground_histogram", "intensity_properties", "merge_histograms"]

Histogram = tuple[tuple[int, int], ...]
"""(HU value, voxel count) pairs, sorted by value, counts > 0."""


def foreground_histogram(image: np.ndarray, label: np.ndarray) -> Histogram:
    """The HU histogram of ``image`` where ``label > 0``."""
    values = np.asarray(image)[np.asarray(label) > 0]
    if values.size == 0:
        return ()
    uniq, counts = np.unique(values, return_counts=True)
    return tuple((int(v), int(c)) for v, c in zip(uniq, counts, strict=True))


def merge_histograms(parts: Iterable[Histogram]) -> Histogram:
    total: dict[int, int] = {}
    for part in parts:
        for value, count in part:
            total[value] = total.get(value, 0) + count
    return tuple(sorted(total.items()))


def intensity_properties(hist: Histogram) -> dict[str, float] | None:
    """nnU-Net's per-channel keys (linear-interpolated percentiles, as numpy's default); None when empty."""
    if not hist:
        return None
    values = np.asarray([v for v, _ in hist], dtype=np.float64)
    counts = np.asarray([c for _, c in hist], dtype=np.int64)
    n = int(counts.sum())
    cumulative = np.cumsum(counts)
    mean = float((values * counts).sum() / n)
    std = float(math.sqrt(max(0.0, float((counts * (values - mean) ** 2).sum()) / n)))

    def order_statistic(k: int) -> float:
        return float(values[int(np.searchsorted(cumulative, k, side="right"))])

    def percentile(q: float) -> float:
        rank = q / 100.0 * (n - 1)
        lo = math.floor(rank)
        a, b = order_statistic(lo), order_statistic(min(lo + 1, n - 1))
        return a + (b - a) * (rank - lo)

    out: dict[str, Any] = {
        "max": float(values[-1]),
        "mean": mean,
        "median": percentile(50.0),
        "min": float(values[0]),
        "percentile_00_5": percentile(0.5),
        "percentile_99_5": percentile(99.5),
        "std": std,
    }
    return out

"""Dataset fingerprint: the target spacing chosen from the spacings of all cases ('auto')."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SPACING_RELATIVE_TOLERANCE", "auto_target_spacing", "merge_jitter"]

SPACING_RELATIVE_TOLERANCE = 1e-3
"""Spacings of one axis within this fraction of each other count as one value for 'auto'
(docs/FORMAT.md): 10.000304 mm is 10 mm written with rounding jitter, not another protocol."""


def merge_jitter(values: np.ndarray, rtol: float = SPACING_RELATIVE_TOLERANCE) -> np.ndarray:
    """``values`` with each run of near-equal values replaced by that run's most frequent value.

    Sorted values form one group while each stays within ``rtol`` of the group's first (smallest)
    value; a group's value is its most common one (the smallest among equally common ones).
    """
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    out = v.copy()
    start = 0
    while start < len(order):
        first = v[order[start]]
        end = start + 1
        while end < len(order) and v[order[end]] - first <= rtol * abs(first):
            end += 1
        members = v[order[start:end]]
        uniq, counts = np.unique(members, return_counts=True)
        out[order[start:end]] = uniq[int(np.argmax(counts))]
        start = end
    return out


def auto_target_spacing(
    spacings: Sequence[tuple[float, float, float]], anisotropy_threshold: float = 3.0
) -> tuple[float, float, float]:
    """Median spacing (z, y, x) in mm, with nnU-Net's anisotropy rule.

    When the largest median spacing is more than ``anisotropy_threshold`` times the smallest, that
    axis takes the 10th percentile of its spacings instead, but never finer than the largest of
    the other axes. Values are rounded to 1e-6 mm so the config hash does not depend on float noise.
    """
    arr = np.asarray(list(spacings), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"spacings must be a non-empty sequence of (z, y, x) triples, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"spacings must be positive and finite, got min {arr.min()} max {arr.max()}")
    if anisotropy_threshold <= 1.0:
        raise ValueError(f"anisotropy_threshold must be > 1, got {anisotropy_threshold}")
    arr = np.stack([merge_jitter(arr[:, a]) for a in range(3)], axis=1)
    target = np.median(arr, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    if target[worst] > anisotropy_threshold * target.min():
        coarse = float(np.percentile(arr[:, worst], 10))
        target[worst] = max(coarse, float(target[others].max()))
    return tuple(round(float(v), 6) for v in target)  # type: ignore[return-value]

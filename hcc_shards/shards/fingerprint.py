"""Dataset fingerprint: the target spacing chosen from the spacings of all cases ('auto')."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["auto_target_spacing"]


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
    target = np.median(arr, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    if target[worst] > anisotropy_threshold * target.min():
        coarse = float(np.percentile(arr[:, worst], 10))
        target[worst] = max(coarse, float(target[others].max()))
    return tuple(round(float(v), 6) for v in target)  # type: ignore[return-value]

"""Per-class foreground locations and bounding boxes, stored with each case so readers never scan."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from hcc_shards.labels import LABELS

__all__ = ["ClassForeground", "class_foreground"]


@dataclass(frozen=True, eq=False)
class ClassForeground:
    """Foreground summary of one label in one case's grid."""

    name: str
    """Label name (hcc_shards.labels)."""
    count: int
    """Number of voxels with this label."""
    bbox_zyx: tuple[tuple[int, int, int], tuple[int, int, int]] | None
    """Inclusive-exclusive voxel bounds ((z0, y0, x0), (z1, y1, x1)); None when the label is absent."""
    locations: np.ndarray
    """int32 (N, 3) voxel indices (z, y, x), a seeded sample sorted in C order; (0, 3) when absent."""

    def bbox_list(self) -> list[list[int]] | None:
        return None if self.bbox_zyx is None else [list(self.bbox_zyx[0]), list(self.bbox_zyx[1])]


def sample_count(total: int, min_samples: int, fraction: float) -> int:
    """nnU-Net's rule: at least ``min_samples`` or ``fraction`` of the voxels, never more than there are."""
    return min(total, max(min_samples, math.ceil(fraction * total)))


def class_foreground(
    label: np.ndarray, *, case_id: str, seed: int, min_samples: int = 10_000, fraction: float = 0.01
) -> dict[str, ClassForeground]:
    """One :class:`ClassForeground` per known label (absent labels included), deterministic in ``seed``."""
    if label.ndim != 3 or label.dtype != np.uint8:
        raise ValueError(f"label must be a 3-D uint8 array, got {label.ndim}-D {label.dtype}")
    out: dict[str, ClassForeground] = {}
    for lab in LABELS:
        mask = label == lab.value
        zi = np.flatnonzero(mask.any(axis=(1, 2)))
        if zi.size == 0:
            out[lab.name] = ClassForeground(lab.name, 0, None, np.zeros((0, 3), dtype=np.int32))
            continue
        z0, z1 = int(zi[0]), int(zi[-1]) + 1
        sub = mask[z0:z1]
        yi = np.flatnonzero(sub.any(axis=(0, 2)))
        xi = np.flatnonzero(sub.any(axis=(0, 1)))
        y0, y1, x0, x1 = int(yi[0]), int(yi[-1]) + 1, int(xi[0]), int(xi[-1]) + 1
        box = sub[:, y0:y1, x0:x1]
        flat = np.flatnonzero(box)
        n = sample_count(flat.size, min_samples, fraction)
        rng = np.random.default_rng(_seed_words(seed, case_id, lab.value))
        chosen = (
            np.sort(rng.choice(flat.size, size=n, replace=False)) if n < flat.size else np.arange(flat.size)
        )
        zyx = np.stack(np.unravel_index(flat[chosen], box.shape), axis=1)
        zyx += np.array([z0, y0, x0])
        out[lab.name] = ClassForeground(
            lab.name, int(flat.size), ((z0, y0, x0), (z1, y1, x1)), zyx.astype(np.int32)
        )
    return out


def _seed_words(seed: int, case_id: str, value: int) -> list[int]:
    # Python's hash() is salted per process; a digest keeps the sample identical on every worker.
    digest = hashlib.sha256(f"{case_id}:{value}".encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]

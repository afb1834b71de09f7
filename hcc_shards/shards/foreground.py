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
    boxes = _bounding_boxes(label)
    for lab in LABELS:
        if lab.value not in boxes:
            out[lab.name] = ClassForeground(lab.name, 0, None, np.zeros((0, 3), dtype=np.int32))
            continue
        z0, z1, y0, y1, x0, x1 = boxes[lab.value]
        box = label[z0:z1, y0:y1, x0:x1] == lab.value
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


def _bounding_boxes(label: np.ndarray, slab: int = 16) -> dict[int, tuple[int, int, int, int, int, int]]:
    """{label value: (z0, z1, y0, y1, x0, x1)} of every known label present, in one pass over the volume.

    Voxel value v sets bit v (values of 8 and more set none; the known labels are 1 to 4): OR
    projections of the bits onto z and onto the (y, x) plane give every label's extent at once,
    slab by slab so the temporaries stay small.
    """
    if any(lab.value >= 8 for lab in LABELS):
        raise ValueError(
            f"label values must be < 8 for the bit projections, got {[lab.value for lab in LABELS]}"
        )
    nz = label.shape[0]
    z_bits = np.zeros(nz, dtype=np.uint8)
    plane = np.zeros(label.shape[1:], dtype=np.uint8)
    for z0 in range(0, nz, slab):
        bits = np.left_shift(np.uint8(1), label[z0 : z0 + slab])
        z_bits[z0 : z0 + slab] = np.bitwise_or.reduce(bits.reshape(bits.shape[0], -1), axis=1)
        plane |= np.bitwise_or.reduce(bits, axis=0)
    y_bits = np.bitwise_or.reduce(plane, axis=1)
    x_bits = np.bitwise_or.reduce(plane, axis=0)
    out = {}
    for lab in LABELS:
        bit = np.uint8(1 << lab.value)
        zi, yi, xi = (np.flatnonzero(p & bit) for p in (z_bits, y_bits, x_bits))
        if zi.size:
            out[lab.value] = (
                int(zi[0]),
                int(zi[-1]) + 1,
                int(yi[0]),
                int(yi[-1]) + 1,
                int(xi[0]),
                int(xi[-1]) + 1,
            )
    return out


def _seed_words(seed: int, case_id: str, value: int) -> list[int]:
    # Python's hash() is salted per process; a digest keeps the sample identical on every worker.
    digest = hashlib.sha256(f"{case_id}:{value}".encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]

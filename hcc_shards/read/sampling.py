"""Samplers: what the sample at each position of an epoch is, as a pure function.

A sampler maps ``(dataset, seed, epoch, position)`` to a :class:`PatchSpec` (which case, which box)
without reading any voxel: random patches use only the manifest and the stored foreground
locations of a case (``foreground/<label>``), never a scan of the volume. The same arguments give
the same spec in every process, which is what makes the order reproducible and resumable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from hcc_shards.read.dataset import Dataset

_CASE_STREAM = 0x0CA5E
_PATCH_STREAM = 0x9A7C4


@dataclass(frozen=True)
class PatchSpec:
    """One sample: a box of one case."""

    position: int
    """Global position of the sample in its epoch."""
    case_id: str
    """Case the box belongs to."""
    start: tuple[int, int, int]
    """First voxel (z, y, x); may be negative, the box is padded outside the volume."""
    size: tuple[int, int, int]
    """Box size (z, y, x)."""
    label: str | None = None
    """Label the box was centred on (forced foreground), or None."""
    padding: bool = False
    """True for a repeat that only evens out the ranks (finite samplers); skip it when evaluating."""

    @property
    def stop(self) -> tuple[int, int, int]:
        """One past the last voxel (z, y, x)."""
        return tuple(a + s for a, s in zip(self.start, self.size, strict=True))  # type: ignore[return-value]


class Sampler(Protocol):
    """What every sampler offers."""

    finite: bool
    """True when the epoch is a fixed list (positions past its end repeat it as padding)."""

    def epoch_length(self, dataset: Dataset) -> int:
        """Samples in one epoch."""
        ...

    def spec(self, dataset: Dataset, seed: int, epoch: int, position: int) -> PatchSpec:
        """The sample at ``position`` (0 <= position < epoch_length for finite samplers)."""
        ...

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings that change the stream (recorded in the resume state)."""
        ...


def _size3(size: Sequence[int], what: str) -> tuple[int, int, int]:
    out = tuple(int(s) for s in size)
    if len(out) != 3 or any(s < 1 for s in out):
        raise ValueError(f"{what} must be three positive ints (z, y, x), got {size!r}")
    return out  # type: ignore[return-value]


def start_range(shape: Sequence[int], size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest patch start per axis.

    Where the volume is at least the patch, the patch stays inside it; where it is smaller, the
    patch covers it whole and the rest is padding (nnU-Net's rule).
    """
    shape_a, size_a = np.asarray(shape, dtype=np.int64), np.asarray(size, dtype=np.int64)
    diff = shape_a - size_a
    return np.minimum(diff, 0), np.maximum(diff, 0)


@lru_cache(maxsize=8)
def _case_permutation(seed: int, epoch: int, block: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, block, _CASE_STREAM]).permutation(n)


@dataclass(frozen=True)
class RandomPatches:
    """Random patches with nnU-Net-style foreground oversampling.

    Cases are visited in a fresh random order per block of ``len(dataset)`` positions, so every case
    is sampled equally often. With probability ``foreground_probability`` a patch is centred on a
    stored foreground location of a class drawn by ``class_weights`` among the classes present in the
    case (clipped so the patch stays inside the volume); otherwise its start is uniform. Only labels
    the case annotates are drawn (``Case.annotated_labels``).
    """

    patch_size: tuple[int, int, int]
    """Patch size (z, y, x) in voxels."""
    samples_per_epoch: int | None = None
    """Samples per epoch; None means one per case."""
    foreground_probability: float = 1.0 / 3.0
    """Chance that a patch is forced onto foreground (nnU-Net forces a third of each batch)."""
    class_weights: Mapping[str, float] | None = field(default=None)
    """Relative weight of each label name when forcing foreground; None weights all labels equally."""
    finite: bool = field(default=False, init=False)
    """Random patches never run out: positions past the epoch length are fresh samples."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", _size3(self.patch_size, "patch_size"))
        if not 0.0 <= self.foreground_probability <= 1.0:
            raise ValueError(f"foreground_probability must be in [0, 1], got {self.foreground_probability}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1, got {self.samples_per_epoch}")
        if self.class_weights is not None:
            weights = {str(k): float(v) for k, v in dict(self.class_weights).items()}
            if any(v < 0 for v in weights.values()) or not any(v > 0 for v in weights.values()):
                raise ValueError(f"class_weights must be >= 0 with at least one > 0, got {weights}")
            object.__setattr__(self, "class_weights", tuple(sorted(weights.items())))

    def epoch_length(self, dataset: Dataset) -> int:
        return self.samples_per_epoch or len(dataset)

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "random_patches",
            "patch_size": list(self.patch_size),
            "samples_per_epoch": self.samples_per_epoch,
            "foreground_probability": self.foreground_probability,
            "class_weights": None if self.class_weights is None else [list(kv) for kv in self.class_weights],
        }

    def _weights(self, names: Sequence[str]) -> np.ndarray:
        if self.class_weights is None:
            return np.ones(len(names))
        table = dict(self.class_weights)  # type: ignore[arg-type]
        return np.array([table.get(n, 0.0) for n in names])

    def spec(self, dataset: Dataset, seed: int, epoch: int, position: int) -> PatchSpec:
        n = len(dataset)
        if n == 0:
            raise ValueError("cannot sample patches from a dataset with no cases")
        block, slot = divmod(int(position), n)
        case_id = dataset.case_ids[int(_case_permutation(seed, epoch, block, n)[slot])]
        shape = dataset.shapes[dataset.row(case_id)]
        lo, hi = start_range(shape, self.patch_size)
        rng = np.random.default_rng([seed, epoch, int(position), _PATCH_STREAM])
        forced = rng.random() < self.foreground_probability
        label: str | None = None
        if forced:
            case = dataset.case(case_id)
            counts = case.foreground_counts()
            # Only labels the case annotates and holds: a label it does not define is unknown
            # there, and class_weights never force a patch onto it.
            annotated = set(case.annotated_labels)
            names = [name for name, count in counts.items() if count > 0 and name in annotated]
            weights = self._weights(names)
            if names and weights.sum() > 0:
                label = names[int(rng.choice(len(names), p=weights / weights.sum()))]
                locations = case.foreground(label)
                if len(locations) == 0:
                    label = None
                else:
                    voxel = locations[int(rng.integers(len(locations)))].astype(np.int64)
                    start = np.clip(voxel - np.asarray(self.patch_size) // 2, lo, hi)
        if label is None:
            start = rng.integers(lo, hi + 1)
        return PatchSpec(
            position=int(position),
            case_id=case_id,
            start=tuple(int(v) for v in start),  # type: ignore[arg-type]
            size=self.patch_size,
            label=label,
        )


def sliding_window_starts(shape: Sequence[int], size: Sequence[int], overlap: float) -> list[np.ndarray]:
    """Per axis, the window starts of a grid with at least ``overlap`` between neighbours.

    Windows tile the volume from 0 to ``shape - size`` with equal steps; an axis shorter than the
    window gets one window centred on it (padded).
    """
    out = []
    for n, s in zip(shape, size, strict=True):
        n, s = int(n), int(s)
        if n <= s:
            out.append(np.array([(n - s) // 2], dtype=np.int64))
            continue
        max_step = max(1, int(np.floor(s * (1.0 - overlap))))
        count = int(np.ceil((n - s) / max_step)) + 1
        out.append(np.round(np.linspace(0, n - s, count)).astype(np.int64))
    return out


@dataclass(frozen=True)
class SlidingWindows:
    """Every window of an overlapping grid over every case, in manifest then C order (inference)."""

    patch_size: tuple[int, int, int]
    """Window size (z, y, x)."""
    overlap: float = 0.5
    """Minimum overlap between neighbouring windows, as a fraction of the window."""
    finite: bool = field(default=True, init=False)
    """The epoch is a fixed list of windows."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", _size3(self.patch_size, "patch_size"))
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")

    def settings(self) -> dict[str, Any]:
        return {"kind": "sliding_windows", "patch_size": list(self.patch_size), "overlap": self.overlap}

    def _counts(self, dataset: Dataset) -> np.ndarray:
        key = json.dumps([dataset.fingerprint(), self.settings()])
        cached = _COUNTS.get(key)
        if cached is None:
            per_case = [
                int(np.prod([len(a) for a in sliding_window_starts(shape, self.patch_size, self.overlap)]))
                for shape in dataset.shapes
            ]
            cached = _COUNTS[key] = np.cumsum([0, *per_case])
        return cached

    def epoch_length(self, dataset: Dataset) -> int:
        return int(self._counts(dataset)[-1])

    def spec(self, dataset: Dataset, seed: int, epoch: int, position: int) -> PatchSpec:
        del seed, epoch  # the grid does not depend on them
        cum = self._counts(dataset)
        row = int(np.searchsorted(cum, position, side="right")) - 1
        starts = sliding_window_starts(dataset.shapes[row], self.patch_size, self.overlap)
        idx = np.unravel_index(int(position) - int(cum[row]), [len(a) for a in starts])
        return PatchSpec(
            position=int(position),
            case_id=dataset.case_ids[row],
            start=tuple(int(a[i]) for a, i in zip(starts, idx, strict=True)),  # type: ignore[arg-type]
            size=self.patch_size,
        )


_COUNTS: dict[str, np.ndarray] = {}


@dataclass(frozen=True)
class WholeVolumes:
    """Each case once, whole, in manifest order."""

    finite: bool = field(default=True, init=False)
    """The epoch is the list of cases."""

    def settings(self) -> dict[str, Any]:
        return {"kind": "whole_volumes"}

    def epoch_length(self, dataset: Dataset) -> int:
        return len(dataset)

    def spec(self, dataset: Dataset, seed: int, epoch: int, position: int) -> PatchSpec:
        del seed, epoch
        shape = dataset.shapes[int(position)]
        return PatchSpec(
            position=int(position),
            case_id=dataset.case_ids[int(position)],
            start=(0, 0, 0),
            size=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        )

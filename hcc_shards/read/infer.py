"""Sliding-window inference: window starts, Gaussian importance weights, stitching.

numpy first; every function that takes predictions also takes torch tensors (on any device) and
then accumulates with torch on that device, importing nothing of torch itself. The stitched value
of a voxel is ``sum_w weight_w(v) * pred_w(v) / sum_w weight_w(v)`` over the windows ``w`` that
cover it: with Gaussian weights (nnU-Net, MONAI ``mode="gaussian"``) a window's centre counts more
than its border, where a network sees least context.

Order of operations of :func:`sliding_window_inference`: 1. the window starts of
:func:`window_starts` (the grid of :func:`hcc_shards.read.sampling.sliding_window_starts`), 2. for
each batch of windows, the padded crops of the volume, 3. ``predict`` on the batch, 4. each
prediction added to a :class:`Stitcher`, 5. the weighted mean (or its argmax).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hcc_shards.read.sampling import sliding_window_starts

__all__ = [
    "Stitcher",
    "gaussian_importance",
    "sliding_window_inference",
    "window_starts",
]

_WEIGHT_STEPS = 2.0**16
SIGMA_SCALE = 0.125
"""Gaussian sigma as a fraction of the window size per axis (nnU-Net's 1/8, MONAI's default)."""


def window_starts(
    shape: Sequence[int], size: Sequence[int], overlap: float = 0.5
) -> list[tuple[int, int, int]]:
    """Every window start (z, y, x) over a volume, in C order; neighbours overlap by >= ``overlap``.

    The same grid as the :class:`~hcc_shards.read.sampling.SlidingWindows` sampler: an axis shorter
    than the window gets one window centred on it (a negative start; the rest is padding).
    """
    axes = sliding_window_starts(shape, size, overlap)
    return [tuple(int(v) for v in s) for s in itertools.product(*axes)]  # type: ignore[misc]


def gaussian_importance(size: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """float32 weights of one window, ``exp(-d^2 / (2 sigma^2))`` from its centre, peak 1.

    ``sigma = sigma_scale * size`` per axis. Weights are rounded to multiples of ``2^-16`` and
    never below ``2^-16`` (nnU-Net likewise raises zero weights to the smallest positive one), so
    every voxel of a window counts and the stitched value is defined where only window borders
    reach. The rounding makes the float64 accumulation exact for integer-valued predictions (a
    product is an integer times ``2^-16``): an identity model gives the volume back bit for bit.
    """
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
    w = np.ones((), dtype=np.float64)
    for n in size:
        n = int(n)
        d = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        g = np.exp(-(d**2) / (2.0 * (sigma_scale * n) ** 2))
        w = np.multiply.outer(w, g)
    w = np.maximum(np.round(w / w.max() * _WEIGHT_STEPS), 1.0) / _WEIGHT_STEPS
    return w.astype(np.float32)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class Stitcher:
    """Accumulates window predictions into one volume of ``shape`` (z, y, x).

    ``add(start, prediction)`` takes a prediction of shape ``(*size)`` or ``(C, *size)`` (channels
    first, as a network outputs logits or probabilities) for the window at ``start``; parts outside
    the volume (padded windows) are ignored. The accumulators are created on the first ``add``:
    float64 for numpy predictions; for torch ones, on the prediction's device, float64 for float64
    predictions and float32 otherwise. ``dtype`` ("float32" or "float64") overrides both.
    """

    def __init__(
        self,
        shape: Sequence[int],
        size: Sequence[int],
        *,
        weighting: str = "gaussian",
        sigma_scale: float = SIGMA_SCALE,
        dtype: str | None = None,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.size = tuple(int(s) for s in size)
        if len(self.shape) != 3 or len(self.size) != 3:
            raise ValueError(f"shape and size must be (z, y, x), got {shape!r} and {size!r}")
        if weighting == "gaussian":
            self.weights = gaussian_importance(self.size, sigma_scale)
        elif weighting == "constant":
            self.weights = np.ones(self.size, dtype=np.float32)
        else:
            raise ValueError(f"weighting must be 'gaussian' or 'constant', got {weighting!r}")
        self.dtype = dtype
        self._sum: Any = None
        self._norm: Any = None
        self._w: Any = None
        self.windows = 0
        """Windows added so far."""

    def _setup(self, prediction: Any) -> None:
        channels = tuple(prediction.shape[:-3])
        if len(channels) > 1:
            raise ValueError(f"prediction must be (*size) or (C, *size), got shape {tuple(prediction.shape)}")
        if _is_torch(prediction):
            import torch

            wide = self.dtype == "float64" or (self.dtype is None and prediction.dtype == torch.float64)
            dt = torch.float64 if wide else torch.float32
            dev = prediction.device
            self._sum = torch.zeros((*channels, *self.shape), dtype=dt, device=dev)
            self._norm = torch.zeros(self.shape, dtype=dt, device=dev)
            self._w = torch.from_numpy(self.weights).to(device=dev, dtype=dt)
        else:
            dt = np.dtype(self.dtype or "float64")
            self._sum = np.zeros((*channels, *self.shape), dtype=dt)
            self._norm = np.zeros(self.shape, dtype=dt)
            self._w = self.weights.astype(dt)

    def add(self, start: Sequence[int], prediction: Any) -> None:
        """Add the prediction of the window whose first voxel is ``start`` (z, y, x)."""
        if tuple(prediction.shape[-3:]) != self.size:
            raise ValueError(f"prediction spatial shape {tuple(prediction.shape[-3:])} != window {self.size}")
        if self._sum is None:
            self._setup(prediction)
        elif tuple(prediction.shape[:-3]) != tuple(self._sum.shape[:-3]):
            raise ValueError(
                f"prediction channels {tuple(prediction.shape[:-3])} differ from the first window's "
                f"{tuple(self._sum.shape[:-3])}"
            )
        dst, src = [], []
        for a, (s, n, w) in enumerate(zip(start, self.shape, self.size, strict=True)):
            lo, hi = max(int(s), 0), min(int(s) + w, n)
            if lo >= hi:
                raise ValueError(f"window at {tuple(start)} lies outside the volume {self.shape} on axis {a}")
            dst.append(slice(lo, hi))
            src.append(slice(lo - int(s), hi - int(s)))
        w = self._w[tuple(src)]
        pred = prediction[(..., *src)]
        pred = pred.to(self._sum.dtype) if _is_torch(pred) else pred.astype(self._sum.dtype, copy=False)
        self._sum[(..., *dst)] += pred * w
        self._norm[tuple(dst)] += w
        self.windows += 1

    def covered(self) -> Any:
        """bool (z, y, x): voxels at least one window reached."""
        if self._norm is None:
            return np.zeros(self.shape, dtype=bool)
        return self._norm > 0

    def result(self) -> Any:
        """The weighted mean, ``(C, z, y, x)`` or ``(z, y, x)``; ValueError if a voxel was never covered."""
        if self._sum is None:
            raise ValueError("no window was added")
        if not bool((self._norm > 0).all()):
            raise ValueError("some voxels are covered by no window; add the windows of window_starts()")
        return self._sum / self._norm

    def labels(self) -> Any:
        """The argmax over channels of :meth:`result` as uint8 (z, y, x) (needs channel predictions)."""
        mean = self.result()
        if mean.ndim != 4:
            raise ValueError("labels() needs (C, *size) predictions (one channel per label value)")
        if _is_torch(mean):
            import torch

            return mean.argmax(dim=0).to(torch.uint8)
        return mean.argmax(axis=0).astype(np.uint8)


def _crop(volume: Any, start: Sequence[int], size: Sequence[int], pad_value: float) -> Any:
    """``volume[..., start:start+size]`` (z, y, x), padded with ``pad_value`` outside the volume."""
    spatial = tuple(volume.shape[-3:])
    lead = tuple(volume.shape[:-3])
    dst, src = [], []
    for s, n, w in zip(start, spatial, size, strict=True):
        lo, hi = max(int(s), 0), min(int(s) + int(w), n)
        dst.append(slice(lo - int(s), hi - int(s)))
        src.append(slice(lo, hi))
    if _is_torch(volume):
        import torch

        out = torch.full((*lead, *size), pad_value, dtype=volume.dtype, device=volume.device)
    else:
        out = np.full((*lead, *size), pad_value, dtype=volume.dtype)
    out[(..., *dst)] = volume[(..., *src)]
    return out


def sliding_window_inference(
    volume: Any,
    predict: Callable[[Any], Any],
    size: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 1,
    weighting: str = "gaussian",
    sigma_scale: float = SIGMA_SCALE,
    pad_value: float = -1024,
    output: str = "mean",
) -> Any:
    """Run ``predict`` over overlapping windows of ``volume`` and stitch the predictions.

    ``volume`` is ``(z, y, x)`` or ``(C, z, y, x)``, numpy or torch. ``predict`` gets a batch
    ``(B, *window)`` stacked from the volume's crops (padded with ``pad_value``, -1024 HU: air) and
    returns ``(B, *size)`` or ``(B, C, *size)``. ``output="mean"`` returns the weighted mean,
    ``output="labels"`` its argmax over channels (uint8).
    """
    if output not in ("mean", "labels"):
        raise ValueError(f"output must be 'mean' or 'labels', got {output!r}")
    size = tuple(int(s) for s in size)
    spatial = tuple(int(s) for s in volume.shape[-3:])
    stitcher = Stitcher(spatial, size, weighting=weighting, sigma_scale=sigma_scale)
    starts = window_starts(spatial, size, overlap)
    for b in range(0, len(starts), max(1, int(batch_size))):
        group = starts[b : b + max(1, int(batch_size))]
        crops = [_crop(volume, s, size, pad_value) for s in group]
        if _is_torch(volume):
            import torch

            batch = torch.stack(crops)
        else:
            batch = np.stack(crops)
        preds = predict(batch)
        if len(preds) != len(group):
            raise ValueError(f"predict returned {len(preds)} predictions for a batch of {len(group)}")
        for s, p in zip(group, preds, strict=True):
            stitcher.add(s, p)
    return stitcher.labels() if output == "labels" else stitcher.result()

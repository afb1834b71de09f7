"""Cohort QC figures with names: a strip plot of per-case spacings and label volumes (outliers
labelled with their case id) and a per-case HU range plot. Written at commit as ``qc/cases.png``
and ``qc/intensity.png``, next to ``qc/cohort.png``."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from hcc_shards.shards.manifest import ManifestRow
from hcc_shards.text import shown

__all__ = ["cases_png", "intensity_png", "outliers"]

NAMED_PER_PANEL = 3
"""Cases named in each strip at most: the ones furthest from the median."""


def outliers(values: np.ndarray, n: int = NAMED_PER_PANEL, k: float = 3.0) -> list[int]:
    """Indices of up to ``n`` values more than ``k`` scaled MADs from the median, furthest first."""
    v = np.asarray(values, dtype=float)
    if v.size < 3:
        return []
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    spread = mad if mad > 0 else max(1e-9, float(np.std(v)))
    score = np.abs(v - med) / spread
    order = [int(i) for i in np.argsort(-score) if score[i] > k]
    return order[:n]


def _figure(rows: int, cols: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(rows, cols, figsize=size, squeeze=False)


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def cases_png(rows: Sequence[ManifestRow]) -> bytes:
    """A labelled strip plot: one row of points per quantity, outliers named by case id."""
    quantities = [
        ("CT slice spacing z (mm)", [r.source_spacing_zyx[0] for r in rows]),
        ("CT pixel spacing x (mm)", [r.source_spacing_zyx[2] for r in rows]),
        ("liver (cm3, CT grid)", [r.volume_ml("liver", grid="source") for r in rows]),
        ("liver tumor (cm3, CT grid)", [r.volume_ml("tumor", grid="source") for r in rows]),
    ]
    plt, fig, axes = _figure(len(quantities), 1, (10, 1.7 * len(quantities)))
    rng = np.random.default_rng(0)
    for ax, (title, values) in zip(axes[:, 0], quantities, strict=True):
        v = np.asarray(values, dtype=float)
        jitter = rng.uniform(-0.3, 0.3, size=v.size)
        ax.scatter(v, jitter, s=12, color="0.3")
        for i in outliers(v):
            ax.annotate(shown(rows[i].case_id, limit=40), (v[i], jitter[i]), fontsize=7, color="red",
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
            ax.scatter([v[i]], [jitter[i]], s=18, color="red")
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        ax.set_title(title, fontsize=9, loc="left")
    return _png(plt, fig)


def intensity_png(rows: Sequence[ManifestRow]) -> bytes:
    """Per case (sorted by mean): foreground HU mean with its 0.5-99.5 % range; outliers named."""
    plt, fig, axes = _figure(1, 1, (10, 3.5))
    ax = axes[0, 0]
    ordered = sorted(rows, key=lambda r: (r.hu_mean, r.case_id))
    x = np.arange(len(ordered))
    mean = np.asarray([r.hu_mean for r in ordered], dtype=float)
    lo = np.asarray([r.hu_p005 for r in ordered], dtype=float)
    hi = np.asarray([r.hu_p995 for r in ordered], dtype=float)
    ax.vlines(x, lo, hi, color="0.6")
    ax.scatter(x, mean, s=10, color="black")
    for i in outliers(mean):
        ax.annotate(shown(ordered[i].case_id, limit=40), (x[i], mean[i]), fontsize=7, color="red",
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xticks([])
    ax.set_xlabel("cases, by mean foreground HU")
    ax.set_ylabel("HU (labelled voxels)")
    ax.set_title("per-case foreground HU: mean and 0.5-99.5 % range", fontsize=9, loc="left")
    return _png(plt, fig)

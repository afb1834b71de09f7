"""Cohort QC figures with names: a strip plot of per-case spacings and label volumes (outliers
labelled with their case id), a per-case HU range plot and a histogram of tumour sizes by annotation
source (the largest named). Written at commit as ``qc/cases.png``, ``qc/intensity.png`` and
``qc/tumor_sizes.png``, next to ``qc/cohort.png``."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hcc_shards.annotation import ANNOTATION_SOURCES
from hcc_shards.shards.manifest import ManifestRow
from hcc_shards.text import shown

__all__ = ["TumorSizes", "cases_png", "intensity_png", "outliers", "tumor_sizes", "tumor_sizes_png"]

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


SOURCE_COLORS = {"manual": "tab:blue", "ai": "tab:orange", "ai_corrected": "tab:green", "unknown": "0.55"}
"""One colour per annotation source in the tumour size histogram (other sources: matplotlib's cycle)."""
TUMOR_SIZE_BINS = 20
"""Log-spaced bins of the tumour size histogram, from the smallest to the largest volume."""


@dataclass(frozen=True)
class TumorSizes:
    """What ``qc/tumor_sizes.png`` shows: tumour volumes (cm3, CT grid) per annotation source."""

    edges: tuple[float, ...]
    """Bin edges, log-spaced (empty when no annotation holds a tumour voxel)."""
    counts: dict[str, tuple[int, ...]]
    """Source -> annotations per bin, sources in display order (only those with a tumour)."""
    named: tuple[tuple[str, float], ...]
    """(case id, cm3) of the largest tumours, largest first."""
    without_tumor: int
    """Annotations that define the tumour label but hold no tumour voxel (not on a log axis)."""


def tumor_sizes(rows: Sequence[ManifestRow], named: int = NAMED_PER_PANEL) -> TumorSizes:
    """The histogram of :func:`tumor_sizes_png`: annotations that do not define the tumour are left out."""
    sized = [(r, v) for r in rows if (v := r.volume_ml("tumor", grid="source")) is not None]
    positive = [(r, v) for r, v in sized if v > 0]
    if not positive:
        return TumorSizes((), {}, (), len(sized))
    values = np.asarray([v for _, v in positive], dtype=float)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo * 1.01:  # one size: a decade around it
        lo, hi = lo / 3.0, hi * 3.0
    edges = np.geomspace(lo, hi, TUMOR_SIZE_BINS + 1)
    order = [
        *ANNOTATION_SOURCES,
        *sorted({r.annotation_source for r, _ in positive} - set(ANNOTATION_SOURCES)),
    ]
    counts = {}
    for source in order:
        v = [val for r, val in positive if r.annotation_source == source]
        if v:
            counts[source] = tuple(int(n) for n in np.histogram(v, bins=edges)[0])
    largest = sorted(positive, key=lambda rv: (-rv[1], rv[0].case_id))[:named]
    return TumorSizes(
        tuple(float(e) for e in edges),
        counts,
        tuple((r.case_id, float(v)) for r, v in largest),
        len(sized) - len(positive),
    )


def tumor_sizes_png(rows: Sequence[ManifestRow]) -> bytes:
    """Histogram of tumour volume per annotation (cm3, CT grid, log bins), stacked by annotation
    source; the largest tumours named by case id."""
    sizes = tumor_sizes(rows)
    plt, fig, axes = _figure(1, 1, (10, 3.5))
    ax = axes[0, 0]
    title = "tumour volume per annotation (cm3, CT grid)"
    if sizes.without_tumor:
        title += f"; {sizes.without_tumor} annotations without tumour voxels not shown"
    ax.set_title(title, fontsize=9, loc="left")
    if not sizes.edges:
        ax.text(
            0.5, 0.5, "no annotation holds a tumour voxel", ha="center", va="center", transform=ax.transAxes
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return _png(plt, fig)
    edges = np.asarray(sizes.edges)
    bottom = np.zeros(edges.size - 1)
    for source, counts in sizes.counts.items():
        heights = np.asarray(counts, dtype=float)
        ax.bar(edges[:-1], heights, width=np.diff(edges), bottom=bottom, align="edge",
               color=SOURCE_COLORS.get(source), edgecolor="white", label=f"{source} ({int(heights.sum())})")  # fmt: skip
        bottom += heights
    ax.set_xscale("log")
    top = float(bottom.max())
    for case_id, volume in sizes.named:
        ax.annotate(shown(case_id, limit=40), (volume, top), fontsize=7, color="red", rotation=90,
                    ha="center", va="bottom", xytext=(0, 4), textcoords="offset points")  # fmt: skip
        ax.axvline(volume, color="red", linewidth=0.6, alpha=0.6)
    ax.set_ylim(0, top * 1.9 + 1)
    ax.set_xlabel("tumour volume (cm3, log scale)")
    ax.set_ylabel("annotations")
    ax.legend(fontsize=7, loc="upper left")
    return _png(plt, fig)

"""QC images: one PNG per case (three planes through the tumour, labels overlaid) and a cohort figure."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from hcc_shards.labels import LABELS, LIVER, TUMOR

__all__ = ["case_png", "cohort_png", "window"]

WINDOW_WIDTH = 400.0
WINDOW_LEVEL = 40.0
OVERLAY_ALPHA = 0.45
PANEL_PX = 256
"""Height in pixels of each panel."""


def window(image: np.ndarray, width: float = WINDOW_WIDTH, level: float = WINDOW_LEVEL) -> np.ndarray:
    """HU -> uint8 grey with the CT window (W400/L40 by default)."""
    lo = level - width / 2.0
    grey = (image.astype(np.float32) - lo) * (255.0 / width)
    return np.clip(grey, 0, 255).astype(np.uint8)


def focus_point(label: np.ndarray) -> tuple[int, int, int]:
    """Voxel the planes go through: the tumour's centroid, else the liver's, else the centre."""
    step = 4  # a centroid on every 4th row and column is within a voxel or two, 16x cheaper
    for value in (TUMOR, LIVER):
        sub = label[:, ::step, ::step] == value
        idx = np.argwhere(sub)
        if idx.size:
            c = idx.mean(axis=0)
            # Snap to the nearest slice that holds the label (a hollow shape's centroid may not).
            zs = np.flatnonzero(sub.any(axis=(1, 2)))
            z = int(zs[np.argmin(np.abs(zs - c[0]))])
            y = min(label.shape[1] - 1, round(c[1] * step))
            x = min(label.shape[2] - 1, round(c[2] * step))
            return z, y, x
    return tuple(s // 2 for s in label.shape)  # type: ignore[return-value]


def overlay(grey: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(H, W) grey + (H, W) labels -> (H, W, 3) uint8, each label blended in its display colour."""
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=2)
    for lab in LABELS:
        m = label == lab.value
        if m.any():
            colour = np.asarray(lab.rgba[:3], dtype=np.float32)
            rgb[m] = (1 - OVERLAY_ALPHA) * rgb[m] + OVERLAY_ALPHA * colour
    return rgb.astype(np.uint8)


def case_png(
    image: np.ndarray,
    label: np.ndarray,
    spacing_zyx: Sequence[float],
    title: str = "",
    direction: np.ndarray | None = None,
) -> bytes:
    """PNG bytes: axial, coronal and sagittal planes through :func:`focus_point`, physical aspect.

    Labels are blended at :data:`OVERLAY_ALPHA` over the windowed CT, each panel has orientation
    letters at its edges (from ``direction``; an axial head-first-supine grid when None), and a
    legend of the label colours runs under the title.
    """
    from PIL import Image, ImageDraw

    from hcc_shards.geometry import axis_letters, opposite_letter

    lz, ly, lx = axis_letters(np.eye(3)[:, ::-1] if direction is None else direction)

    z, y, x = focus_point(label)
    sz, sy, sx = (float(v) for v in spacing_zyx)
    # Superior at the top of coronal and sagittal views: flip z.
    planes = [
        (image[z], label[z], sy, sx),
        (image[::-1, y, :], label[::-1, y, :], sz, sx),
        (image[::-1, :, x], label[::-1, :, x], sz, sy),
    ]
    # (top, bottom, left, right) of each panel; coronal and sagittal show z flipped.
    edges = [
        (opposite_letter(ly), ly, opposite_letter(lx), lx),
        (lz, opposite_letter(lz), opposite_letter(lx), lx),
        (lz, opposite_letter(lz), opposite_letter(ly), ly),
    ]
    panels = []
    for img, lab, row_mm, col_mm in planes:
        h_mm, w_mm = img.shape[0] * row_mm, img.shape[1] * col_mm
        width = max(1, round(PANEL_PX * w_mm / h_mm))
        # Nearest-neighbour sampling to the panel first: windowing and blending then touch the
        # panel's pixels, not the plane's (the same picture, a third of the work for a 512^2 plane).
        rows = _nearest(img.shape[0], PANEL_PX)[:, None]
        cols = _nearest(img.shape[1], width)[None, :]
        panel = Image.fromarray(overlay(window(img[rows, cols]), lab[rows, cols]))
        _letters(ImageDraw.Draw(panel), panel.width, panel.height, edges[len(panels)])
        panels.append(panel)
    header = 34 if title else 16
    canvas = Image.new("RGB", (sum(p.width for p in panels) + 4 * (len(panels) - 1), PANEL_PX + header))
    left = 0
    for p in panels:
        canvas.paste(p, (left, header))
        left += p.width + 4
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), f"{title}  W{WINDOW_WIDTH:.0f}/L{WINDOW_LEVEL:.0f}", fill=(255, 255, 255))
    x = 4
    for lab in LABELS:
        draw.rectangle((x, header - 13, x + 9, header - 4), fill=tuple(lab.rgba[:3]))
        draw.text((x + 13, header - 15), lab.display, fill=(255, 255, 255))
        x += 13 + int(draw.textlength(lab.display)) + 12
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _letters(draw, width: int, height: int, edges: tuple[str, str, str, str]) -> None:
    """Orientation letters at the middle of each edge: top, bottom, left, right."""
    top, bottom, left, right = edges
    spots = ((top, (width // 2 - 3, 2)), (bottom, (width // 2 - 3, height - 13)))
    spots += ((left, (3, height // 2 - 6)), (right, (width - 10, height // 2 - 6)))
    for letter, (x, y) in spots:
        draw.text((x + 1, y + 1), letter, fill=(0, 0, 0))  # a shadow: readable on bright tissue too
        draw.text((x, y), letter, fill=(255, 255, 0))


def _nearest(n: int, size: int) -> np.ndarray:
    """Source index of each of ``size`` output pixels over ``n`` input pixels (pixel centres)."""
    return np.minimum(((np.arange(size) + 0.5) * (n / size)).astype(np.intp), n - 1)


def _bins(values: np.ndarray, n: int = 20) -> np.ndarray:
    """Histogram bin edges that also work when every value is (almost) the same.

    numpy refuses 20 bins over a range of a few ulps, which is what one target spacing gives after
    float round trips, so such data get one bin of width 1% around their value.
    """
    values = np.asarray(values, dtype=float)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        half = max(abs(hi) * 0.01, 1e-3)
        return np.array([lo - half, hi + half])
    return np.linspace(lo, hi, n + 1)


def cohort_png(
    source_spacings: Sequence[Sequence[float]],
    spacings: Sequence[Sequence[float]],
    volumes_ml: dict[str, Sequence[float]],
) -> bytes:
    """PNG bytes: histograms of source spacing (z and in plane) and of each label's volume."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    src = np.asarray(source_spacings, dtype=float).reshape(-1, 3)
    out = np.asarray(spacings, dtype=float).reshape(-1, 3)
    for ax, col, title in ((axes[0, 0], 0, "slice spacing z (mm)"), (axes[0, 1], 2, "pixel spacing x (mm)")):
        ax.hist(src[:, col], bins=_bins(src[:, col]), color="0.5", label="CT grid")
        ax.hist(out[:, col], bins=_bins(out[:, col]), color="black", alpha=0.7, label="stored grid")
        ax.set_title(title)
        ax.legend(fontsize=8)
    ratio = src[:, 0] / np.maximum(src[:, 2], 1e-9)
    axes[0, 2].hist(ratio, bins=_bins(ratio), color="0.5")
    axes[0, 2].set_title("CT anisotropy z / x")
    # Liver and tumour get a panel each; the two vessels share the last one.
    panels = {
        LABELS[0].name: axes[1, 0],
        LABELS[1].name: axes[1, 1],
        LABELS[2].name: axes[1, 2],
        LABELS[3].name: axes[1, 2],
    }
    for lab in LABELS:
        ax = panels[lab.name]
        vols = [v for v in volumes_ml.get(lab.name, []) if v > 0]
        ax.hist(
            vols,
            bins=_bins(np.asarray(vols)),
            alpha=0.6,
            color=np.asarray(lab.rgba[:3]) / 255.0,
            label=lab.display,
        )
        ax.set_title("volume (cm3)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()

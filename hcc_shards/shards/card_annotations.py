"""DATASET.md sections on annotations: counts and label tables by source, agreement with the manual one.

Label tables are counted over the annotations that define each label (an AI SEG of liver and
tumour says nothing of the portal vein). The manual annotations' table is the collection's own
card. For images with a manual and another annotation, the other's agreement per label: Dice
(manifest ``dice_<label>``, computed at write time on the stored grid) and volume ratio (its
source-grid volume over the manual one's), as a table and ``qc/agreement.png``.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from hcc_shards.annotation import ANNOTATION_SOURCES, SOURCE_MANUAL
from hcc_shards.format import AGREEMENT_PNG
from hcc_shards.labels import LABELS
from hcc_shards.shards.label_stats import label_table
from hcc_shards.shards.manifest import ManifestRow

__all__ = ["agreement_png", "agreement_table", "annotation_lines"]


def _label_table(rows: Sequence[ManifestRow]) -> list[str]:

    out = [
        "| Anatomy | Annotations defining it | Total Cases | Coverage | Minimum Volume (cm³) "
        "| Median Volume (cm³) | Maximum Volume (cm³) |",
        "|---|---|---|---|---|---|---|",
    ]
    for rec in label_table(rows, grid="source"):
        defining = sum(1 for r in rows if r.annotates(rec["name"]))
        out.append(
            f"| {rec['display']} | {defining} | {rec['cases']} | {rec['coverage'] * 100:.0f}% | "
            f"{_num(rec['min'])} | {_num(rec['median'])} | {_num(rec['max'])} |"
        )
    return out


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def agreement_table(rows: Sequence[ManifestRow]) -> list[dict[str, Any]]:
    """Per (source, label): pairs with the image's manual annotation, Dice and volume ratio stats."""
    by_id = {r.case_id: r for r in rows}
    out = []
    for source in ANNOTATION_SOURCES:
        if source == SOURCE_MANUAL:
            continue
        pairs = [
            (r, by_id[r.reference_case_id])
            for r in rows
            if r.annotation_source == source and r.reference_case_id in by_id
        ]
        for lab in LABELS:
            dice = [d for r, _ in pairs if (d := getattr(r, f"dice_{lab.name}")) is not None]
            ratios = []
            for r, ref in pairs:
                mine, theirs = r.volume_ml(lab.name, grid="source"), ref.volume_ml(lab.name, grid="source")
                if mine is not None and theirs:
                    ratios.append(mine / theirs)
            if not dice and not ratios:
                continue
            out.append(
                {
                    "source": source,
                    "label": lab.name,
                    "display": lab.display,
                    "pairs": len(dice),
                    "dice": dice,
                    "volume_ratio": ratios,
                }
            )
    return out


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "n/a | n/a | n/a"
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):.3f} | {v.min():.3f} | {v.max():.3f}"


def annotation_lines(rows: Sequence[ManifestRow]) -> list[str]:
    """The card's annotation sections (Markdown lines)."""
    rows = sorted(rows, key=lambda r: r.case_id)
    counts = Counter(r.annotation_source for r in rows)
    images = Counter(r.image_id for r in rows)
    lines = [
        "## Annotations",
        "",
        "Every SEG is its own case (an annotation); annotations of one CT image share its stored image. "
        'Sources follow docs/FORMAT.md, "Annotation source"; `unknown` is never counted as manual.',
        "",
        "| item | count |",
        "|---|---|",
        f"| stored images | {len(images)} |",
        f"| images with more than one annotation | {sum(1 for n in images.values() if n > 1)} |",
    ]
    lines += [f"| annotations: {s} | {counts.get(s, 0)} |" for s in ANNOTATION_SOURCES]
    lines.append("")
    for source in ANNOTATION_SOURCES:
        of_source = [r for r in rows if r.annotation_source == source]
        if not of_source:
            continue
        title = (
            "manual annotations (the collection's own card)"
            if source == SOURCE_MANUAL
            else f"{source} annotations"
        )
        lines += [
            f"### Labels of the {title}",
            "",
            "On the CT grid as acquired; counted over the annotations that define each label.",
            "",
            *_label_table(of_source),
            "",
        ]
    agreement = agreement_table(rows)
    if agreement:
        lines += [
            "### Agreement with the manual annotation of the same image",
            "",
            "Dice on the stored grid; volume ratio = this annotation's volume / the manual one's (CT grid).",
            "",
            "| source | Anatomy | pairs | Dice median | Dice min | Dice max | volume ratio median "
            "| volume ratio min | volume ratio max |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rec in agreement:
            lines.append(
                f"| {rec['source']} | {rec['display']} | {rec['pairs']} | {_stats(rec['dice'])} | "
                f"{_stats(rec['volume_ratio'])} |"
            )
        lines += ["", f"![agreement]({AGREEMENT_PNG})", ""]
    return lines


def agreement_png(rows: Sequence[ManifestRow]) -> bytes | None:
    """PNG bytes: Dice per label and source against the manual annotation; None without pairs."""
    agreement = [rec for rec in agreement_table(rows) if rec["dice"]]
    if not agreement:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(agreement)), 4))
    ax.boxplot([rec["dice"] for rec in agreement])
    ax.set_xticks(range(1, len(agreement) + 1), [f"{rec['source']}\n{rec['display']}" for rec in agreement])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Dice against the manual annotation")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()

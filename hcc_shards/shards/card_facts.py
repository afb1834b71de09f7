"""Sections of DATASET.md beyond the collection's published tables: licence, citation and source,
what "Data Volume" counts, and HU statistics (card.py calls :func:`extra_sections`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hcc_shards.format import CASES_PNG, DATASET_FILE, INTENSITY_PNG, TUMOR_SIZES_PNG
from hcc_shards.shards.manifest import ManifestRow
from hcc_shards.text import md_cell

__all__ = ["DATA_VOLUME_NOTE", "extra_sections", "input_source", "quarantine_file"]

LICENCE = "CC BY 4.0 (Creative Commons Attribution 4.0 International)"
DOI = "10.7937/TCIA.5FNA-0924"
CITATION = (
    "Moawad, A. W., Fuentes, D., Morshid, A., Khalaf, A. M., Elmohr, M. M., Abusaif, A., Hazle, J. D., "
    "Kaseb, A. O., Hassan, M., Mahvash, A., Szklaruk, J., Qayyum, A., & Elsayes, K. (2021). Multimodality "
    "annotated HCC cases with and without advanced imaging segmentation [Data set]. The Cancer Imaging "
    "Archive. https://doi.org/10.7937/TCIA.5FNA-0924"
)
DATA_VOLUME_NOTE = (
    '"Data Volume" is the number of cases: one case is one CT series (one acquisition of it) with the '
    "segmentation that annotates it, stored as one image and one label array."
)

_IDC_BUCKETS = ("idc-open-data", "public-datasets-idc", "idc-open-cr", "idc-open-idc1")


def input_source(input_url: str, index_version: str | None = None) -> dict[str, Any]:
    """Where the DICOM came from: ``kind`` (IDC, TCIA download or object store), the input, and
    the IDC index version when the build names one."""
    entries = [e.strip() for e in str(input_url).split(",") if e.strip()]
    first = entries[0] if entries else ""
    protocol = first.split("://", 1)[0].lower() if "://" in first else "file"
    if any(b in e for e in entries for b in _IDC_BUCKETS) or any(
        e.lower().startswith("idc://") for e in entries
    ):
        kind = "IDC (Imaging Data Commons bucket)"
    elif protocol == "file":
        kind = "TCIA download (local folder)"
    else:
        kind = f"object store ({protocol}://)"
    out: dict[str, Any] = {"kind": kind, "input": entries}
    if index_version:
        out["idc_index_version"] = str(index_version)
    return out


def quarantine_file(url: str) -> str:
    """The base name of a quarantined file, escaped for a table cell ("-" when no one file is to blame)."""
    name = os.path.basename(str(url).rstrip("/")) if url else ""
    return md_cell(name) if name else "-"


def figure_lines() -> list[str]:
    """The named cohort figures of :mod:`hcc_shards.shards.qc_cohort`."""
    return [
        "Per-case spacings and label volumes, outliers named by case id:",
        "",
        f"![cases]({CASES_PNG})",
        "",
        "Per-case foreground HU (mean and 0.5-99.5 % range):",
        "",
        f"![intensity]({INTENSITY_PNG})",
        "",
        "Tumour volume per annotation (cm3 on the CT grid, log scale) by annotation source, the largest named:",
        "",
        f"![tumour sizes]({TUMOR_SIZES_PNG})",
        "",
    ]


def _hu_rows(rows: Sequence[ManifestRow]) -> list[str]:
    out = []
    for column, label in (
        ("hu_p005", "0.5th percentile"),
        ("hu_mean", "mean"),
        ("hu_p995", "99.5th percentile"),
    ):
        values = np.asarray([getattr(r, column) for r in rows], dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            out.append(f"| {label} | n/a | n/a | n/a |")
            continue
        out.append(f"| {label} | {values.min():.0f} | {np.median(values):.0f} | {values.max():.0f} |")
    return out


def extra_sections(
    rows: Sequence[ManifestRow], source: dict[str, Any] | None, intensity: dict[str, float] | None = None
) -> list[str]:
    """Markdown lines of the licence, source and HU sections."""
    lines = [
        "## Licence, citation and source",
        "",
        f"- Licence of the images and segmentations: {LICENCE}; give credit as below.",
        f"- DOI: [{DOI}](https://doi.org/{DOI})",
        f"- Citation: {CITATION}",
    ]
    if source:
        lines.append(f"- Source: {md_cell(source.get('kind', ''))}")
        shown = source.get("input") or []
        if shown:
            more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
            lines.append(f"- Input: {', '.join(f'`{md_cell(e)}`' for e in shown[:3])}{more}")
        if source.get("idc_index_version"):
            lines.append(f"- IDC index version: {md_cell(source['idc_index_version'])}")
    lines += [
        "",
        "## HU statistics",
        "",
        "Per case, over its labelled (non-background) voxels on the stored grid; each row gives the "
        "minimum, median and maximum of that per-case value across the cases.",
        "",
        "| per-case HU | min | median | max |",
        "|---|---|---|---|",
        *_hu_rows(rows),
        "",
    ]
    if intensity:
        lines += [
            "Foreground intensity fingerprint, over the labelled voxels of all cases together "
            f"(nnU-Net's `foreground_intensity_properties_per_channel`, also in {DATASET_FILE}):",
            "",
            "| mean | std | median | min | max | 0.5th percentile | 99.5th percentile |",
            "|---|---|---|---|---|---|---|",
            f"| {intensity['mean']:.1f} | {intensity['std']:.1f} | {intensity['median']:.1f} "
            f"| {intensity['min']:.0f} | {intensity['max']:.0f} | {intensity['percentile_00_5']:.1f} "
            f"| {intensity['percentile_99_5']:.1f} |",
            "",
        ]
    return lines

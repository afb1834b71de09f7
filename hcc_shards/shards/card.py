"""DATASET.md: the dataset card's tables, recomputed from the built data at every commit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from hcc_shards.config import BuildConfig
from hcc_shards.format import COHORT_PNG, FORMAT_VERSION, MANIFEST_FILE, QUARANTINE_FILE, qc_path
from hcc_shards.labels import LABELS
from hcc_shards.quarantine import QuarantineRecord
from hcc_shards.shards import card_facts
from hcc_shards.shards.card_annotations import annotation_lines
from hcc_shards.shards.card_clinical import research_sections
from hcc_shards.shards.card_phases import phase_lines
from hcc_shards.shards.label_stats import label_table
from hcc_shards.shards.manifest import SPLITS, ManifestRow
from hcc_shards.shards.research import Research
from hcc_shards.text import md_cell

__all__ = ["dataset_card", "label_table", "resolution_table"]

_STATS = ("min", "median", "max")


def _xyz(v: Sequence[float]) -> tuple[float, float, float]:
    # The card lists (z, y, x), the array order of the whole project (the published card has (x, y, z)).
    return (v[0], v[1], v[2])


def resolution_table(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]
) -> list[dict[str, Any]]:
    """Per-axis min/median/max of spacing (mm) and size, each as a (z, y, x) tuple."""
    sp = np.asarray(spacings, dtype=float).reshape(-1, 3)
    sh = np.asarray(shapes, dtype=float).reshape(-1, 3)
    out = []
    for stat in _STATS:
        f = getattr(np, stat)
        out.append(
            {
                "stat": stat,
                "spacing": _xyz(f(sp, axis=0).tolist()) if len(sp) else None,
                "size": _xyz(f(sh, axis=0).tolist()) if len(sh) else None,
            }
        )
    return out


def _fmt3(v: Sequence[float] | None, fmt: str) -> str:
    return "n/a" if v is None else "(" + ", ".join(format(x, fmt) for x in v) + ")"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def dataset_card(
    rows: Sequence[ManifestRow],
    quarantine: Sequence[QuarantineRecord],
    config: BuildConfig,
    *,
    name: str,
    created: str,
    builder_version: str,
    target_spacing_zyx: Sequence[float],
    research: Research | None = None,
    source: dict[str, Any] | None = None,
    intensity: dict[str, float] | None = None,
    input_counts: dict[str, int] | None = None,
) -> str:
    """Markdown text of DATASET.md. ``input_counts``: the build summary's counts of what the input
    held (patients, patients_without_seg, ct_series, ct_series_unused)."""
    rows = sorted(rows, key=lambda r: r.case_id)
    lines = [
        f"# {name}",
        "",
        f"Built {created} by hcc-shards {builder_version}; format version {FORMAT_VERSION}, "
        f"configuration `{config.config_hash()}`. Every table below is computed from this build's "
        f"`{MANIFEST_FILE}` and `{QUARANTINE_FILE}`.",
        "",
        "## Dataset Meta Information",
        "",
        "| Dimensions | Modality | Task Type | Anatomical Structures | Number of Categories | Data Volume "
        "| File Format |",
        "|---|---|---|---|---|---|---|",
        f"| 3D | CT | Segmentation | {', '.join(lab.display for lab in LABELS)} | {len(LABELS)} "
        f"| {len(rows)} | OME-Zarr 0.5 (Zarr v3) |",
        "",
        card_facts.DATA_VOLUME_NOTE,
        "",
        *card_facts.extra_sections(rows, source, intensity),
        "## Counts",
        "",
        "| item | count |",
        "|---|---|",
        f"| cases | {len(rows)} |",
        f"| patients | {len({r.patient_id for r in rows})} |",
    ]
    counts = input_counts or {}
    if counts.get("patients"):  # what the input held beyond the cases: counted, never dropped silently
        lines += [
            f"| patients in the input | {counts['patients']} |",
            f"| patients with CT but no SEG | {counts.get('patients_without_seg', 0)} |",
            f"| CT series in the input | {counts.get('ct_series', 0)} |",
            f"| CT series used by no case | {counts.get('ct_series_unused', 0)} |",
        ]
    splits = Counter(r.split for r in rows)
    lines += [f"| split {s} | {splits.get(s, 0)} |" for s in SPLITS]
    lines += [f"| quarantined | {len(quarantine)} |"]
    lines += [
        f"| quarantined: {code} | {n} |" for code, n in sorted(Counter(q.code for q in quarantine).items())
    ]
    lines += [
        f"| 2D slices (CT grid) | {sum(r.source_shape_zyx[0] for r in rows)} |",
        f"| 2D slices (stored grid) | {sum(r.shape_zyx[0] for r in rows)} |",
        "",
        "## Resolution Details",
        "",
        "Spacing and size are (z, y, x), the arrays' axis order; each axis is summarised on its own.",
        "",
    ]
    ts = _xyz(list(target_spacing_zyx))
    for title, spacings, shapes in (
        (
            "Before resampling (CT grid)",
            [r.source_spacing_zyx for r in rows],
            [r.source_shape_zyx for r in rows],
        ),
        (
            f"After resampling to {_fmt3(ts, '.4g')} mm",
            [r.spacing_zyx for r in rows],
            [r.shape_zyx for r in rows],
        ),
    ):
        lines += [f"### {title}", "", "| Dataset Statistics | spacing (mm) | size |", "|---|---|---|"]
        for rec in resolution_table(spacings, shapes):
            lines.append(f"| {rec['stat']} | {_fmt3(rec['spacing'], '.2f')} | {_fmt3(rec['size'], '.0f')} |")
        lines.append("")
    lines += ["## Label Information Statistics", ""]
    for grid, note in (
        ("source", "On the CT grid as acquired (label voxels x CT voxel volume), before resampling."),
        ("stored", "On the stored grid after resampling (label voxels x stored voxel volume)."),
    ):
        lines += [
            note,
            "",
            "| Anatomy | Total Cases | Coverage | Minimum Volume (cm³) | Median Volume (cm³) "
            "| Maximum Volume (cm³) |",
            "|---|---|---|---|---|---|",
        ]
        for rec in label_table(rows, grid=grid):
            lines.append(
                f"| {rec['display']} | {rec['cases']} | {rec['coverage'] * 100:.0f}% | {_num(rec['min'])} | "
                f"{_num(rec['median'])} | {_num(rec['max'])} |"
            )
        lines.append("")
    lines += annotation_lines(rows)
    lines += phase_lines(rows)
    lines += research_sections(research)
    colours = ", ".join(f"{lab.display} rgba{tuple(lab.rgba)}" for lab in LABELS)
    lines += [
        "## Quality control",
        "",
        f"Label colours: {colours}. CT window W400/L40.",
        "",
        f"![cohort]({COHORT_PNG})",
        "",
        *card_facts.figure_lines(),
    ]
    flagged = [r for r in rows if r.qc_flags]
    if flagged:
        lines += ["| case | QC flags |", "|---|---|"]
        lines += [f"| {r.case_id} | {', '.join(r.qc_flags)} |" for r in flagged]
        lines.append("")
    lines += ["| case | patient | split | QC image |", "|---|---|---|---|"]
    lines += [
        f"| {r.case_id} | {md_cell(r.patient_id)} | {r.split} | [png]({qc_path(r.case_id)}) |" for r in rows
    ]
    if quarantine:
        lines += [
            "",
            "## Quarantine",
            "",
            "| code | stage | patient | file | message |",
            "|---|---|---|---|---|",
        ]
        for q in sorted(quarantine, key=lambda q: q.sort_key):
            file = card_facts.quarantine_file(q.url)
            lines.append(
                f"| {md_cell(q.code)} | {q.stage} | {md_cell(q.patient_id)} | {file} | "
                f"{md_cell(q.message, limit=600)} |"
            )
    return "\n".join(lines) + "\n"

"""DATASET.md sections of the research outputs: splits, clinical summary, survival, features.

Kaplan-Meier estimates are computed here with numpy (product-limit estimator: at each distinct
event time ``t``, ``S *= 1 - d_t / n_t`` with ``d_t`` events at ``t`` and ``n_t`` patients still at
risk just before ``t``; censored patients leave the risk set after their time).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hcc_shards import storage
from hcc_shards.format import CLINICAL_FILE, DATASET_FILE, SURVIVAL_PNG
from hcc_shards.shards.atomic import put_bytes_atomic
from hcc_shards.shards.manifest import SPLITS
from hcc_shards.text import md_cell

if TYPE_CHECKING:
    from hcc_shards.shards.research import Research

__all__ = ["ENDPOINTS", "kaplan_meier", "research_sections", "survival_png"]

ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("TTP", "Censored_0_progressed_1", "time to progression"),
    ("OS", "Death_1_StillAliveorLostToFU_0", "overall survival"),
)
"""(time column, event column (1 = event), title) of the survival endpoints looked for."""


def kaplan_meier(times: Sequence[float], events: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(step times starting at 0, survival just after each) of the product-limit estimator."""
    t = np.asarray(times, dtype=float)
    e = np.asarray(events, dtype=int)
    keep = np.isfinite(t)
    t, e = t[keep], e[keep]
    out_t, out_s, s = [0.0], [1.0], 1.0
    for u in np.unique(t[e == 1]):
        at_risk = int(np.sum(t >= u))
        d = int(np.sum((t == u) & (e == 1)))
        if at_risk:
            s *= 1.0 - d / at_risk
        out_t.append(float(u))
        out_s.append(s)
    return np.asarray(out_t), np.asarray(out_s)


def _patient_splits(research: Research) -> dict[str, str]:
    return {r.patient_id: r.split for r in research.rows}


def _endpoint_data(research: Research) -> list[tuple[str, str, dict[str, tuple[list[float], list[int]]]]]:
    """Per endpoint present: (time column, title, split -> (times, events)) over joined patients."""
    c = research.clinical
    if c is None or not c.rows:
        return []
    splits = _patient_splits(research)
    out = []
    for time_col, event_col, title in ENDPOINTS:
        if time_col not in c.table.column_names or event_col not in c.table.column_names:
            continue
        times, events = c.values(time_col), c.values(event_col)
        by_split: dict[str, tuple[list[float], list[int]]] = {s: ([], []) for s in ("all", *SPLITS)}
        for p, split in splits.items():
            tv, ev = times.get(p), events.get(p)
            if not isinstance(tv, (int, float)) or not isinstance(ev, (int, float)):
                continue
            for key in ("all", split):
                by_split[key][0].append(float(tv))
                by_split[key][1].append(int(ev == 1))
        out.append((time_col, title, by_split))
    return out


def survival_png(research: Research) -> bytes | None:
    """PNG of the Kaplan-Meier curves of each endpoint, one line per split; None without endpoints."""
    data = _endpoint_data(research)
    if not data:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data), figsize=(6 * len(data), 4.5), squeeze=False)
    for ax, (time_col, title, by_split) in zip(axes[0], data, strict=True):
        for split in ("all", *SPLITS):
            times, events = by_split[split]
            if not times:
                continue
            t, s = kaplan_meier(times, events)
            t = np.append(t, max(times))
            s = np.append(s, s[-1])
            ax.step(t, s, where="post", label=f"{split} (n={len(times)}, events={sum(events)})")
        ax.set_title(f"Kaplan-Meier: {title} ({time_col})")
        ax.set_xlabel(f"{time_col} (units of the clinical table)")
        ax.set_ylabel("probability without event")
        ax.set_ylim(0, 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def research_sections(research: Research | None) -> list[str]:
    """Markdown lines of the sections; empty without research outputs."""
    if research is None:
        return []
    return [
        *_split_lines(research),
        *_clinical_lines(research),
        *_survival_lines(research),
        *_feature_lines(research),
    ]


def _split_lines(research: Research) -> list[str]:
    rep = research.splits
    how = {
        "cohort": "built-in, over the whole cohort",
        "stratified": f"stratified by `{md_cell(rep.stratify_by)}`",
        "file": "from a split file (nnU-Net splits_final.json)",
    }[rep.method]
    lines = ["## Splits", "", f"Patient-level; {how}.", ""]
    if rep.strata:
        edges = ", ".join(f"{e:.4g}" for e in rep.edges)
        lines += [
            f"Strata (quantile edges: {edges})." if edges else "Strata.",
            "",
            "| stratum | patients |",
            "|---|---|",
        ]
        lines += [f"| {md_cell(s)} | {n} |" for s, n in rep.strata]
        lines.append("")
    folds = Counter(r.fold for r in research.rows if r.fold is not None)
    if folds:
        lines += ["| fold | cases |", "|---|---|", *[f"| {f} | {n} |" for f, n in sorted(folds.items())], ""]
    if rep.problems:
        lines += ["Split problems:", "", *[f"- {md_cell(p)}" for p in rep.problems], ""]
    return lines


def _clinical_lines(research: Research) -> list[str]:
    c = research.clinical
    if c is None:
        return []
    lines = [
        "## Clinical data",
        "",
        f"Source sha256 `{c.sha256[:16] or 'n/a'}`, join column `{md_cell(c.key or 'n/a')}`"
        f"{' (IDs mapped to the build pseudonyms)' if c.pseudonymized else ''}: {c.joined} of {c.patients} "
        f"patients joined, {c.rows} rows. Column names as in the source; safe names in `{CLINICAL_FILE}`'s "
        f"metadata and `{DATASET_FILE}`.",
        "",
        "| problem | count |",
        "|---|---|",
        *[f"| {k} | {n} |" for k, n in c.counts().items()],
        "",
    ]
    if c.problems:
        lines += ["| problem | patient | row | column | value |", "|---|---|---|---|---|"]
        for p in c.problems[:200]:
            lines.append(
                f"| {p.kind} | {md_cell(p.patient_id)} | {p.row if p.row >= 0 else ''} | {md_cell(p.column)} "
                f"| {md_cell(p.value)} |"
            )
        if len(c.problems) > 200:
            lines.append(f"| ... | {len(c.problems) - 200} more | | | |")
        lines.append("")
    if c.rows:
        joined = {r.patient_id for r in research.rows}
        ids = c.table.column("patient_id").to_pylist()
        mask = [p in joined for p in ids]
        lines += [
            "Missingness over the joined patients:",
            "",
            "| column | type | missing | summary |",
            "|---|---|---|---|",
        ]
        n = sum(mask)
        for name in c.table.column_names[1:]:
            vals = [v for v, m in zip(c.table.column(name).to_pylist(), mask, strict=True) if m]
            miss = sum(v is None for v in vals)
            lines.append(
                f"| {md_cell(name)} | {c.table.schema.field(name).type} | {miss}/{n} | {md_cell(_summary(vals))} |"
            )
        lines.append("")
    return lines


def _summary(vals: list[Any]) -> str:
    present = [v for v in vals if v is not None]
    if not present:
        return ""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        a = np.asarray(present, dtype=float)
        if len(set(present)) <= 5:
            return ", ".join(f"{k}: {n}" for k, n in sorted(Counter(present).items()))
        return f"median {np.median(a):.4g} (range {a.min():.4g} to {a.max():.4g})"
    top = Counter(map(str, present)).most_common(5)
    more = len(set(map(str, present))) - len(top)
    return ", ".join(f"{k}: {n}" for k, n in top) + (f", +{more} more" if more > 0 else "")


def _survival_lines(research: Research) -> list[str]:
    data = _endpoint_data(research)
    if not data:
        return []
    lines = [
        "## Survival",
        "",
        "| endpoint | split | patients | events | event rate |",
        "|---|---|---|---|---|",
    ]
    for time_col, _, by_split in data:
        for split in ("all", *SPLITS):
            times, events = by_split[split]
            rate = f"{100 * sum(events) / len(events):.0f}%" if events else "n/a"
            lines.append(f"| {time_col} | {split} | {len(times)} | {sum(events)} | {rate} |")
    lines += ["", f"![survival]({SURVIVAL_PNG})", ""]
    return lines


def _feature_lines(research: Research) -> list[str]:
    f = research.features
    if f is None:
        return []
    names = [n for n in f.column_names if n.startswith("original_")]
    by_class = Counter(n.split("_")[1] for n in names)
    per = Counter(zip(f.column("label").to_pylist(), f.column("phase").to_pylist(), strict=True))
    errors = sum(1 for e in f.column("error").to_pylist() if e)
    lines = [
        "## Radiomics features",
        "",
        f"{f.num_rows} rows (case x label x channel), {len(names)} features, {errors} rows where the "
        "library gave none.",
        "",
        "| label | phase | rows |",
        "|---|---|---|",
        *[f"| {md_cell(lab)} | {md_cell(ph or 'n/a')} | {n} |" for (lab, ph), n in sorted(per.items())],
        "",
    ]
    lines += [
        "| class | features |",
        "|---|---|",
        *[f"| {k} | {n} |" for k, n in sorted(by_class.items())],
        "",
    ]
    if research.feature_settings:
        lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in research.feature_settings), ""]
    return lines


def write_survival(vurl: str, research: Research, storage_options: dict[str, Any] | None = None) -> None:
    """qc/survival.png when the clinical table has a survival endpoint."""
    png = survival_png(research)
    if png is not None:
        put_bytes_atomic(storage.join(vurl, SURVIVAL_PNG), png, storage_options)

"""``hcc-shards info OUTPUT``: what a built dataset holds, from its dataset.json and manifest.

Version and format, counts by split (and by annotation source where the manifest has that
column), target and CT-grid spacing, stored sizes, labels, and the quarantine by reason. Reads
only ``LATEST.json``, ``dataset.json`` and ``manifest.parquet`` through the thin reader.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from hcc_shards.commands._dataset import add_dataset_arguments, fmt_zyx, open_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object")


def facts(ds: Any) -> dict[str, Any]:
    """The facts ``info`` prints, as plain values."""
    import numpy as np

    raw = ds.info.raw
    m = ds.manifest
    cols = set(m.column_names)

    def count(column: str) -> dict[str, int] | None:
        if column not in cols:
            return None
        return dict(sorted(Counter(str(v) for v in m.column(column).to_pylist()).items()))

    def spread(column: str) -> dict[str, list[float]] | None:
        if column not in cols or m.num_rows == 0:
            return None
        arr = np.asarray(m.column(column).to_pylist(), dtype=float).reshape(-1, 3)
        return {s: getattr(np, s)(arr, axis=0).tolist() for s in ("min", "median", "max")}

    shapes = ds.shapes
    labels = {}
    for _, name in ds.info.labels:
        column = f"voxels_{name}"
        if column in cols:
            labels[name] = sum(1 for v in m.column(column).to_pylist() if v)
    counts = raw.get("counts") or {}
    return {
        "name": ds.info.name,
        "location": ds.store.root_url,
        "version": ds.version,
        "format_version": ds.info.format_version,
        "builder_version": raw.get("builder_version"),
        "created": raw.get("created"),
        "cases": len(ds),
        "patients": len(set(m.column("patient_id").to_pylist())) if "patient_id" in cols else None,
        "by_split": count("split"),
        "by_annotation_source": count("annotation_source"),
        "target_spacing_zyx": list(ds.info.target_spacing_zyx) if ds.info.target_spacing_zyx else None,
        "source_spacing_zyx": spread("source_spacing_zyx"),
        "shape_zyx": spread("shape_zyx"),
        "stored_voxels": int(shapes.prod(axis=1).sum()) if len(shapes) else 0,
        "cases_with_label": labels,
        "quarantined": counts.get("quarantined"),
        "quarantine_by_reason": counts.get("quarantine_by_reason") or {},
        "intensity": (raw.get("foreground_intensity_properties_per_channel") or {}).get("0"),
    }


def format_facts(f: dict[str, Any]) -> str:
    from hcc_shards.text import shown

    def counts(d: dict[str, int] | None) -> str:
        return ", ".join(f"{shown(k)} {v}" for k, v in d.items()) if d else "none"

    def spread(d: dict[str, list[float]] | None, fmt: str) -> str:
        if not d:
            return "n/a"
        return ", ".join(f"{k} {fmt_zyx(v, fmt)}" for k, v in d.items())

    lines = [
        f"dataset           {shown(f['name'])}",
        f"location          {shown(f['location'])}",
        f"version           {f['version']} (format {f['format_version']}, built by hcc-shards "
        f"{shown(f['builder_version'] or '?')} on {shown(f['created'] or '?')})",
        f"cases             {f['cases']}" + (f" of {f['patients']} patients" if f["patients"] else ""),
        f"by split          {counts(f['by_split'])}",
    ]
    if f["by_annotation_source"] is not None:
        lines.append(f"by source         {counts(f['by_annotation_source'])}")
    lines += [
        f"target spacing    {fmt_zyx(f['target_spacing_zyx'])} mm (z, y, x)",
        f"CT-grid spacing   {spread(f['source_spacing_zyx'], '.4g')} mm (z, y, x)",
        f"stored size       {spread(f['shape_zyx'], '.0f')} voxels (z, y, x); "
        f"{f['stored_voxels']:,} voxels in all",
        f"cases with label  {counts(f['cases_with_label'])}",
    ]
    if f["intensity"]:
        i = f["intensity"]
        lines.append(
            f"foreground HU     mean {i['mean']:.1f}, std {i['std']:.1f}, median {i['median']:.1f}, "
            f"0.5-99.5 % {i['percentile_00_5']:.0f} to {i['percentile_99_5']:.0f}, "
            f"min {i['min']:.0f}, max {i['max']:.0f}"
        )
    q = f["quarantined"]
    lines.append(f"quarantined       {'n/a' if q is None else q} ({counts(f['quarantine_by_reason'])})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    f = facts(open_for(args, "info"))
    print(json.dumps(f, indent=2, sort_keys=True) if args.json else format_facts(f))
    return 0

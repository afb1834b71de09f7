"""``hcc-shards show OUTPUT CASE``: one case's manifest row, geometry, labels and QC image.

CASE is a case id, a unique prefix of one, or a patient id with a single case. Reads the
manifest and the case's ``zarr.json`` attributes (no array chunk).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hcc_shards.commands._dataset import add_dataset_arguments, fmt_value, fmt_zyx, open_for, table
from hcc_shards.format import qc_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser)
    parser.add_argument("case", metavar="CASE", help="case id, a unique prefix of one, or a patient id")


def resolve_case(ds: Any, wanted: str) -> tuple[str | None, list[str]]:
    """(the case id CASE names, or None; the candidates when it names none or several)."""
    ids = list(ds.case_ids)
    if wanted in ids:
        return wanted, [wanted]
    patients = (
        ds.manifest.column("patient_id").to_pylist() if "patient_id" in ds.manifest.column_names else []
    )
    found = [cid for cid, p in zip(ids, patients, strict=False) if p == wanted] or [
        cid for cid in ids if cid.startswith(wanted)
    ]
    return (found[0] if len(found) == 1 else None), found


def qc_image(ds: Any, case_id: str) -> str:
    """Where the case's QC image is, and whether it is there."""
    rel = qc_path(case_id)
    try:
        there = ds.store.fs.exists(ds.store.path(rel))
    except OSError:
        there = False
    return ds.store.url(rel) + ("" if there else "  (missing)")


def describe(ds: Any, case_id: str) -> str:
    from hcc_shards.geometry import axis_letters
    from hcc_shards.text import shown

    case = ds.case(case_id)
    row = case.metadata
    lines = [f"case {shown(case_id)}", "", "manifest row:"]
    lines += [f"  {k:<28}{fmt_value(v)}" for k, v in row.items()]
    g = case.geometry
    letters = axis_letters(g.direction)
    lines += [
        "",
        "geometry (array order z, y, x; LPS mm):",
        f"  shape                       {fmt_zyx(g.shape, '.0f')} voxels",
        f"  spacing                     {fmt_zyx(g.spacing)} mm",
        f"  origin (voxel 0 centre)     {fmt_value([round(v, 3) for v in g.origin])} mm (L, P, S)",
        f"  axes point towards          {', '.join(f'{a}: {b}' for a, b in zip('zyx', letters, strict=True))}",
        "  direction (rows L, P, S;    "
        + " ".join(fmt_value([round(v, 6) for v in r]) for r in g.direction.tolist())
        + "\n   columns z, y, x)",
    ]
    counts = case.foreground_counts()
    fg = case.attributes.get("foreground") or {}
    voxel_ml = g.voxel_volume_ml
    body = []
    for value, name in ds.info.labels:
        box = (fg.get(name) or {}).get("bbox_zyx")
        n = counts.get(name, 0)
        body.append([str(value), shown(name), str(n), f"{n * voxel_ml:.2f}", fmt_value(box) if box else "-"])
    lines += ["", "labels (stored grid):"]
    lines += ["  " + t for t in table(["value", "name", "voxels", "ml", "bbox (z, y, x)"], body).splitlines()]
    lines += ["", f"QC image  {qc_image(ds, case_id)}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from hcc_shards.text import shown

    ds = open_for(args, "show")
    case_id, found = resolve_case(ds, args.case)
    if case_id is None:
        if found:
            print(
                f"hcc-shards show: {shown(args.case)!r} names {len(found)} cases: "
                + ", ".join(shown(c) for c in found[:10]),
                file=sys.stderr,
            )
        else:
            print(
                f"hcc-shards show: no case {shown(args.case)!r} in {shown(ds.store.root_url)}",
                file=sys.stderr,
            )
        return 2
    print(describe(ds, case_id))
    return 0

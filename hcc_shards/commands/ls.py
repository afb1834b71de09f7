"""``hcc-shards ls OUTPUT [--filter COLUMN=VALUE ...] [--columns A,B,...]``: the cases as a table.

Each ``--filter`` keeps the rows whose COLUMN equals VALUE (numbers compare as numbers; for a
list column such as ``qc_flags``, VALUE must be one of its items); several filters must all hold,
and several values of one column (``split=val,test``) accept any of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from hcc_shards.commands._dataset import add_dataset_arguments, fmt_value, open_for, table

DEFAULT_COLUMNS = (
    "case_id",
    "patient_id",
    "split",
    "annotation_source",
    "shape_zyx",
    "spacing_zyx",
    "volume_ml_liver",
    "volume_ml_tumor",
    "qc_flags",
)
"""Columns shown without ``--columns`` (those the manifest has)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_arguments(parser)
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="keep rows whose COLUMN is VALUE (repeat for more conditions), e.g. split=val",
    )
    parser.add_argument("--columns", default=None, metavar="A,B,...", help="manifest columns to show")
    parser.add_argument("--json", action="store_true", help="one JSON object per case (all columns)")


def parse_filters(items: Sequence[str], columns: Sequence[str]) -> dict[str, list[str]]:
    """``COLUMN=VALUE[,VALUE]`` items -> column -> accepted values; ValueError names a bad item."""
    out: dict[str, list[str]] = {}
    for item in items:
        column, sep, value = item.partition("=")
        column = column.strip()
        if not sep or not column:
            raise ValueError(f"--filter {item!r}: expected COLUMN=VALUE, e.g. split=val")
        if column not in columns:
            raise ValueError(f"--filter {item!r}: no manifest column {column!r}; columns are {list(columns)}")
        out.setdefault(column, []).extend(v.strip() for v in value.split(","))
    return out


def matches(value: Any, accepted: Sequence[str]) -> bool:
    """Whether one manifest value passes a filter's accepted values (as written on the command line)."""
    if isinstance(value, (list, tuple)):
        return any(matches(v, accepted) for v in value)
    for want in accepted:
        if isinstance(value, bool) or value is None:
            if str(value).lower() == want.lower():
                return True
        elif isinstance(value, (int, float)):
            try:
                if float(want) == float(value):
                    return True
            except ValueError:
                continue
        elif str(value) == want:
            return True
    return False


def selected_rows(ds: Any, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    rows = ds.manifest.to_pylist()
    return [r for r in rows if all(matches(r[c], accepted) for c, accepted in filters.items())]


def run(args: argparse.Namespace) -> int:
    ds = open_for(args, "ls")
    names = ds.manifest.column_names
    try:
        filters = parse_filters(args.filter, names)
        columns = (
            [c.strip() for c in args.columns.split(",") if c.strip()]
            if args.columns
            else [c for c in DEFAULT_COLUMNS if c in names]
        )
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise ValueError(f"--columns: no manifest column {unknown}; columns are {names}")
    except ValueError as exc:
        print(f"hcc-shards ls: {exc}", file=sys.stderr)
        return 2
    rows = selected_rows(ds, filters)
    if args.json:
        for r in rows:
            print(json.dumps(r, sort_keys=False, default=str))
    else:
        print(table(columns, [[fmt_value(r[c]) for c in columns] for r in rows]))
        print(f"{len(rows)} of {len(ds)} cases")
    return 0

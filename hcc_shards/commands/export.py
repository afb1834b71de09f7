"""``hcc-shards export {nnunet,nifti} OUTPUT DEST``: a built dataset in the formats training tools read;
``hcc-shards export seg OUTPUT CASE_ID DEST.dcm [--prediction P.npy]``: one case's labels (or a
prediction on the stored grid) as a DICOM SEG over the original CT instances.

``--filter COLUMN=VALUE[,VALUE...]`` (repeatable) keeps the manifest rows whose column takes one
of the values (``--filter split=train``). Exit status 0 on success, 2 when the dataset cannot be
opened or the filter names no column.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hcc_shards.commands import add_storage_options, storage_options_of
from hcc_shards.commands._dataset import OUTPUT_HELP, version_help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    nnunet = sub.add_parser(
        "nnunet", help="nnU-Net v2 raw layout: DatasetNNN_Name/imagesTr, labelsTr, dataset.json"
    )
    nifti = sub.add_parser("nifti", help="DEST/images/<case_id>.nii.gz and DEST/labels/<case_id>.nii.gz")
    for p in (nnunet, nifti):
        p.add_argument("output", metavar="OUTPUT", help=OUTPUT_HELP)
        p.add_argument("dest", metavar="DEST", help="where to write (fsspec URL)")
        p.add_argument("--version", default=None, help=version_help("export"))
        p.add_argument(
            "--filter",
            action="append",
            default=[],
            metavar="COLUMN=VALUE[,VALUE]",
            help="keep manifest rows whose COLUMN is one of the values (repeatable), e.g. split=train",
        )
        add_storage_options(p)
    seg = sub.add_parser("seg", help="one case's labels or a prediction as DICOM SEG over the original CT")
    seg.add_argument("output", metavar="OUTPUT", help=OUTPUT_HELP)
    seg.add_argument("case_id", metavar="CASE_ID")
    seg.add_argument("dest", metavar="DEST", help="the .dcm file to write (fsspec URL)")
    seg.add_argument("--version", default=None, help=version_help("read"))
    seg.add_argument(
        "--prediction", default=None, help="a .npy uint8 (z, y, x) label array on the stored grid"
    )
    seg.add_argument("--algorithm", default=None, help="name of the model that made --prediction")
    add_storage_options(seg)
    nnunet.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id, 1..999")
    nnunet.add_argument(
        "--phases",
        default=None,
        metavar="LIST",
        help="comma-separated phases, one channel each (_0000, _0001, ...), of a dataset built with "
        "--phases all, e.g. arterial,portal_venous; cases lacking one are left out (docs/PHASES.md)",
    )
    nnunet.add_argument(
        "--name", default=None, help="dataset name in DatasetNNN_<name> (default: the dataset's)"
    )


def _value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def parse_filters(filters: list[str]) -> dict[str, list[Any]]:
    """``["split=train,val"]`` -> ``{"split": ["train", "val"]}``."""
    out: dict[str, list[Any]] = {}
    for f in filters:
        column, sep, values = f.partition("=")
        if not sep or not column:
            raise SystemExit(f"--filter expects COLUMN=VALUE[,VALUE], got {f!r}")
        out.setdefault(column.strip(), []).extend(_value(v.strip()) for v in values.split(","))
    return out


def run(args: argparse.Namespace) -> int:
    from hcc_shards.errors import FormatError
    from hcc_shards.read import open_dataset
    from hcc_shards.text import shown

    options = storage_options_of(args)
    try:
        ds = open_dataset(args.output, options, args.version)
        ds = ds.filter(**parse_filters(getattr(args, "filter", [])))
    except (FormatError, KeyError) as exc:
        print(f"hcc-shards export: {shown(str(exc))}", file=sys.stderr)
        return 2
    if args.format == "seg":
        return _seg(ds, args, options)
    if len(ds) == 0:
        print("hcc-shards export: no case matches the filter", file=sys.stderr)
        return 2
    if args.format == "nnunet":
        from hcc_shards.export import export_nnunet

        phases = [p.strip() for p in args.phases.split(",") if p.strip()] if args.phases else None
        root = export_nnunet(
            ds, args.dest, args.dataset_id, name=args.name, storage_options=options, phases=phases
        )
        print(f"exported {len(ds)} cases of version {ds.version} to {shown(root)}")
    else:
        from hcc_shards.export import export_nifti

        export_nifti(ds, args.dest, options)
        print(f"exported {len(ds)} cases of version {ds.version} to {shown(args.dest)}")
    return 0


def _seg(ds: Any, args: argparse.Namespace, options: dict[str, Any] | None) -> int:
    import numpy as np

    from hcc_shards.annotation import SOURCE_PREDICTION
    from hcc_shards.export.seg import export_seg
    from hcc_shards.text import shown

    try:
        case = ds.case(args.case_id)
        label = None if args.prediction is None else np.load(args.prediction)
        # A row written back by `predictions add` is a model's output: its segments are AUTOMATIC.
        stored_prediction = case.annotation_source == SOURCE_PREDICTION and label is None
        model = str(case.metadata.get("content_creator") or "prediction") if stored_prediction else None
        uid = export_seg(
            case,
            args.dest,
            options,
            label=label,
            algorithm=args.algorithm or (args.prediction and "prediction") or model,
        )
    except (KeyError, ValueError, OSError) as exc:
        print(f"hcc-shards export seg: {shown(str(exc))}", file=sys.stderr)
        return 2
    print(f"wrote DICOM SEG {uid} of {shown(args.case_id)} to {shown(args.dest)}")
    return 0

"""``hcc-shards predictions add OUTPUT NAME --from DIR``: a model's predictions written back as label images.

DIR holds ``<case_id>.npy`` (uint8 (z, y, x) on the stored grid) or ``<case_id>.nii.gz`` files (the
geometry convention of ``hcc-shards export nifti``). Each becomes a label image of source
``prediction`` next to its case's annotations and a row of ``predictions/NAME.parquet`` with its
volumes and its Dice against the case (docs/FORMAT.md, "Predictions"). Exit status 0 when the set
is written, 2 when it is refused (nothing written).
"""

from __future__ import annotations

import argparse
import sys

from hcc_shards.commands import add_storage_options, storage_options_of
from hcc_shards.format import LATEST_FILE, VERSIONS_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="write a folder of predictions as prediction set NAME")
    add.add_argument("output", metavar="OUTPUT", help="dataset root (or one versions/<hash> folder)")
    add.add_argument("name", metavar="NAME", help="name of the set: letters, digits, '.', '_', '-'")
    add.add_argument(
        "--from", dest="source", required=True, metavar="DIR", help="folder of <case_id>.npy or .nii.gz files"
    )
    add.add_argument("--model", default="", help="model name and version, kept in the attributes and rows")
    add.add_argument(
        "--labels", default=None, help="labels the model predicts, comma-separated (default: every label)"
    )
    add.add_argument(
        "--version", default=None, help=f"write into {VERSIONS_DIR}/<VERSION> instead of {LATEST_FILE}'s"
    )
    add.add_argument("--replace", action="store_true", help="replace a set of the same name")
    add_storage_options(add)


def run(args: argparse.Namespace) -> int:
    from hcc_shards.errors import FormatError, PredictionError
    from hcc_shards.labels import LABELS
    from hcc_shards.predictions import read_prediction_files, write_predictions
    from hcc_shards.read import open_dataset
    from hcc_shards.text import shown

    options = storage_options_of(args)
    labels = None if args.labels is None else [p.strip() for p in args.labels.split(",") if p.strip()]
    try:
        ds = open_dataset(args.output, options, args.version, predictions=False)
        arrays = read_prediction_files(args.source, ds, options)
        written = write_predictions(
            args.output,
            arrays,
            name=args.name,
            model=args.model,
            annotated_labels=labels,
            storage_options=options,
            version=args.version,
            replace_set=args.replace,
        )
    except (PredictionError, FormatError, ValueError) as exc:
        print(f"hcc-shards predictions: {shown(str(exc), limit=None)}", file=sys.stderr)
        return 2
    for r in written.rows:
        dice = " ".join(
            f"{lab.name}={v:.3f}" for lab in LABELS if (v := getattr(r, f"dice_{lab.name}")) is not None
        )
        print(f"{r.case_id}  for {r.reference_case_id}  dice {dice or 'n/a'}")
    print(
        f"wrote prediction set {written.name} ({len(written.rows)} cases) into {shown(written.version_url)}"
    )
    return 0

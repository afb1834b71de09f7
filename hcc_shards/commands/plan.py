"""``hcc-shards plan INPUT [--json]``: index INPUT, pair every SEG, print cases and quarantine reasons."""

from __future__ import annotations

import argparse
import json
import sys

from hcc_shards.commands import add_storage_options, storage_options_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="folder, bucket prefix (gs://, s3://), single file, or idc://COLLECTION[?filters] "
        "(the IDC index's counts are printed first)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines as in docs/FORMAT.md 'Plan records'")
    add_storage_options(parser)
    parser.add_argument("--config", metavar="FILE", help="BuildConfig as JSON (BuildConfig.to_dict())")
    parser.add_argument("--workers", type=int, default=8, help="concurrent header reads (default 8)")
    parser.add_argument(
        "--annotation-sources",
        default=None,
        metavar="LIST",
        help="annotation sources to list, e.g. manual,ai_corrected (default: all)",
    )


def run(args: argparse.Namespace) -> int:
    from hcc_shards.config import BuildConfig
    from hcc_shards.dicom.plan import format_record, plan_records
    from hcc_shards.errors import OperatorError
    from hcc_shards.idc import is_idc_url
    from hcc_shards.preflight import check_input

    storage_options = storage_options_of(args)
    try:
        if not is_idc_url(args.input):  # resolved through the index, which reports what it names
            check_input([args.input], storage_options)
    except OperatorError as exc:
        print(f"hcc-shards plan: {exc}", file=sys.stderr)
        return exc.exit_code
    config = BuildConfig()
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            config = BuildConfig.from_dict(json.load(fh))
    if args.annotation_sources:
        from dataclasses import replace

        from hcc_shards.annotation import parse_sources

        config = replace(config, annotation_sources=parse_sources(args.annotation_sources))
    for rec in plan_records(args.input, config, storage_options, workers=args.workers):
        if args.json:
            print(json.dumps(rec, sort_keys=False))
        else:
            print(format_record(rec))
    return 0

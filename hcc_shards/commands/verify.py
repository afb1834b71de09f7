"""``hcc-shards verify OUTPUT``: check every stored object of a built dataset against its checksums.

Exit status: 0 when every case verifies, 1 when some case is corrupted or incomplete (each is
printed as ``CORRUPT <case_id>: <problem>``), 2 when the dataset itself cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import sys

from hcc_shards.commands import add_storage_options, storage_options_of
from hcc_shards.commands._dataset import OUTPUT_HELP, version_help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUTPUT", help=OUTPUT_HELP)
    parser.add_argument("--version", default=None, help=version_help("check"))
    parser.add_argument("--workers", type=int, default=4, help="cases checked in parallel (default 4)")
    parser.add_argument("--json", action="store_true", help="print one JSON report instead of text lines")
    add_storage_options(parser)


def run(args: argparse.Namespace) -> int:
    from hcc_shards.text import shown
    from hcc_shards.verify import verify_dataset

    options = storage_options_of(args)
    report = verify_dataset(args.output, options, args.version, workers=args.workers)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    elif report.dataset_problem:
        print(
            f"hcc-shards verify: cannot open {shown(args.output)}: {shown(report.dataset_problem)}",
            file=sys.stderr,
        )
    else:
        for p in report.problems:
            print(f"CORRUPT {p.case_id}: {shown(p.problem, limit=None)}")
        print(
            f"verified {report.cases} cases of version {report.version}: "
            f"{report.cases - len(report.problems)} ok, {len(report.problems)} corrupted"
        )
    if report.dataset_problem:
        return 2
    return 0 if report.ok else 1

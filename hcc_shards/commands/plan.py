"""``hcc-shards plan INPUT [INPUT ...] [--json]``: the build's listing, index and pairing without writing
anything; print every case and quarantine reason.

INPUT and the flags that shape what is read (storage options, config, label map, annotation
sources, pseudonymization) are the build's own (hcc_shards.build.flags).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hcc_shards.build.flags import add_build_flags

    parser.add_argument(
        "input",
        metavar="INPUT",
        nargs="+",
        help="as for build: a folder, bucket prefix (gs://, s3://) or object URL; several; @LIST; or "
        "idc://COLLECTION[?filters] (the IDC index's counts are printed first)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines as in docs/FORMAT.md 'Plan records'")
    parser.add_argument("--workers", type=int, default=8, help="concurrent header reads (default 8)")
    add_build_flags(parser, people=True, plan=True)


def run(args: argparse.Namespace) -> int:
    from hcc_shards.build.dryrun import format_record, plan_records
    from hcc_shards.build.flags import FLAG_BY_NAME
    from hcc_shards.build.launch import preflight
    from hcc_shards.build.plan import BuildPlan, flag_values
    from hcc_shards.errors import ConfigError, OperatorError
    from hcc_shards.text import shown

    values = {k: v for k, v in vars(args).items() if k in FLAG_BY_NAME and k != "input"}
    try:
        plan = BuildPlan.from_flags(flag_values(**values, input=",".join(args.input)), dry_run=True)
        preflight(plan)
    except OperatorError as exc:
        print(f"hcc-shards plan: {shown(exc, limit=None)}", file=sys.stderr)
        return exc.exit_code
    except ConfigError as exc:
        print(f"hcc-shards plan: {shown(exc, limit=None)}", file=sys.stderr)
        return 2
    for rec in plan_records(plan, workers=args.workers):
        if args.json:
            print(json.dumps(rec, sort_keys=False))
        else:
            print(format_record(rec))
    return 0

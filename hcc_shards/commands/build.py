"""``hcc-shards build INPUT [INPUT ...] OUTPUT [options] [engine flags]``: build a dataset with Apache
Beam (``--runner``) or Spark (``--engine spark``).

INPUT is a prefix or object URL, several of them (one after the other or comma-separated),
``@LIST``: a text file with one prefix or object URL per line, or ``idc://COLLECTION[?filters]``:
a collection of Imaging Data Commons resolved through its index (docs/RUNNERS.md, "Inputs").

Our options (declared once, in hcc_shards.build.flags) may come before or after INPUT OUTPUT; any
other flag (``--temp_location=...``, ``--dask_npartitions=...``) is handed to Beam unchanged. See
docs/RUNNERS.md for each runner's flags.
"""

from __future__ import annotations

import argparse
import re
import sys


def _add_flags(parser: argparse.ArgumentParser) -> None:
    from hcc_shards.build.flags import add_build_flags

    parser.add_argument(
        "--engine",
        choices=("beam", "spark"),
        default=None,
        help="beam (default: Apache Beam on --runner) or spark (a native Spark driver; docs/RUN_ON_SPARK.md)",
    )
    parser.add_argument(
        "--runner",
        default=None,
        help="Beam runner: DirectRunner (default), DaskRunner, DataflowRunner, PortableRunner, ...",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes: DirectRunner's, or Spark's local[N] (0: all cores)",
    )
    parser.add_argument(
        "--dask-address", default=None, metavar="ADDR", help="dask scheduler, e.g. tcp://h:8786"
    )
    parser.add_argument(
        "--spark-master",
        default=None,
        metavar="URL",
        help="Spark master (default local[*]; yarn, spark://...)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show the engine's own log warnings"
    )
    add_build_flags(parser, people=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        metavar="INPUT",
        nargs="+",
        help="DICOM to build: a local folder, gs:// or s3:// prefix or object URL; several (given one "
        "after the other or comma-separated); @LIST, a text file (local, gs://, s3://) with one "
        "prefix or object URL per line; or idc://COLLECTION[?patients=..&modalities=..&analysis=..] "
        "(resolved offline through the IDC index; needs the idc extra)",
    )
    parser.add_argument("output", metavar="OUTPUT", help="dataset root: local folder, gs:// or s3:// prefix")
    _add_flags(parser)
    extra = parser.add_argument(
        "beam_args", nargs=argparse.REMAINDER, help="further flags, passed to Apache Beam"
    )
    extra.required = False  # argparse marks a REMAINDER positional required; no Beam flag is
    parser.epilog = (
        "example: hcc-shards build ./HCC-TACE-Seg ./hcc --spacing auto  "
        "(docs/RUNNERS.md has each runner's flags)"
    )


def beam_argv(args: argparse.Namespace) -> list[str]:
    """The launcher's argv for parsed CLI arguments (our flags first, then the pass-through ones)."""
    from hcc_shards.build.flags import to_argv

    late = argparse.ArgumentParser(add_help=False)
    _add_flags(late)
    # Flags written after OUTPUT land in beam_args; pick ours out, leave the rest to the engine.
    args, passthrough = late.parse_known_args(args.beam_args or [], namespace=args)
    inputs = [args.input] if isinstance(args.input, str) else list(args.input)
    argv = [
        f"--input={','.join(inputs)}",
        f"--output={args.output}",
        *to_argv(args, skip=("input", "output")),
    ]
    spark = args.engine == "spark" or (args.engine is None and args.spark_master)
    if spark:
        argv.append("--engine=spark")
        master = args.spark_master or (f"local[{args.workers or '*'}]" if args.workers is not None else None)
        if master:
            argv.append(f"--spark_master={master}")
    else:
        if args.runner:
            argv.append(f"--runner={args.runner}")
        elif args.dask_address:
            argv.append("--runner=DaskRunner")
        if args.workers is not None:
            argv.append(f"--direct_num_workers={args.workers}")
        if args.dask_address:
            argv.append(f"--dask_client_address={args.dask_address}")
    return [*argv, *passthrough]


def run(args: argparse.Namespace) -> int:
    from hcc_shards.build.launch import configure_logging, format_summary
    from hcc_shards.errors import HccShardsError, OperatorError
    from hcc_shards.text import shown
    from pipelines.build import run_build

    argv = beam_argv(args)
    configure_logging(args.verbose)
    try:
        _print_index_totals(argv)
        summary = run_build(argv, progress=not args.quiet)
    except OperatorError as exc:
        print(f"hcc-shards build: {shown(exc, limit=None)}", file=sys.stderr)
        return exc.exit_code
    except HccShardsError as exc:
        print(f"hcc-shards build: {shown(exc, limit=None)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a runner wraps the listing step's error in its own
        missing = _missing_input(exc)
        if missing is None:
            raise
        print(f"hcc-shards build: {missing}; nothing was built", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


def _print_index_totals(argv: list[str]) -> None:
    """For every ``idc://`` INPUT entry, what the IDC index says the build will touch (before it reads)."""
    from hcc_shards.build.inputs import idc_selections
    from hcc_shards.idc import format_index_record

    text = next((a.partition("=")[2] for a in argv if a.startswith("--input=")), "")
    for selection in idc_selections(text):
        print(f"[hcc-shards] {format_index_record(selection.record())}", file=sys.stderr, flush=True)


def _missing_input(exc: BaseException) -> str | None:
    """The listing step's message when INPUT names a prefix that does not exist, else None."""
    found = re.search(r"input '.*? does not exist or cannot be listed[^\n\[]*", str(exc))
    return found.group(0).strip() if found else None

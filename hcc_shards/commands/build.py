"""``hcc-shards build INPUT [INPUT ...] OUTPUT [options] [Beam flags]``: build a dataset with Apache Beam.

INPUT is a prefix or object URL, several of them (one after the other or comma-separated),
``@LIST``: a text file with one prefix or object URL per line, or ``idc://COLLECTION[?filters]``:
a collection of Imaging Data Commons resolved through its index (docs/RUNNERS.md, "Inputs").

Our options may come before or after INPUT OUTPUT; any other flag (``--runner=...``,
``--temp_location=...``, ``--dask_npartitions=...``) is handed to Beam unchanged. See
docs/RUNNERS.md for each runner's flags.
"""

from __future__ import annotations

import argparse
import re
import sys


def _add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spacing", default=None, metavar="auto|Z,Y,X", help="target spacing in mm (default: auto)"
    )
    parser.add_argument("--label-map", default=None, metavar="FILE", help="segment label map JSON")
    parser.add_argument("--seed", type=int, default=None, help="split and sampling seed (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="build at most N cases")
    parser.add_argument(
        "--annotation-sources",
        default=None,
        metavar="LIST",
        help="annotation sources to build, e.g. manual,ai_corrected (default: all)",
    )
    parser.add_argument("--config", default=None, metavar="FILE", help="BuildConfig JSON file")
    parser.add_argument("--storage-options", default=None, metavar="JSON", help="fsspec options, both sides")
    parser.add_argument("--input-storage-options", default=None, metavar="JSON", help="fsspec options, input")
    parser.add_argument(
        "--output-storage-options", default=None, metavar="JSON", help="fsspec options, output"
    )
    parser.add_argument(
        "--pseudonymize",
        action="store_true",
        help="replace patient/study identifiers by a keyed hash; the key is read from "
        "$HCC_SHARDS_PSEUDONYMIZE_KEY",
    )
    parser.add_argument(
        "--runner",
        default=None,
        help="DirectRunner (default), DaskRunner, DataflowRunner, PortableRunner, ...",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="DirectRunner worker processes (0: all cores)"
    )
    parser.add_argument(
        "--dask-address", default=None, metavar="ADDR", help="dask scheduler, e.g. tcp://h:8786"
    )
    parser.add_argument(
        "--listing-shards", type=int, default=None, help="parallel listing tasks (default 16)"
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="commit even when no case was built (by default such a build leaves LATEST.json as it was)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--clinical", default=None, metavar="FILE", help="clinical table (CSV, XLSX, Parquet)"
    )
    parser.add_argument("--clinical-key", default=None, metavar="COLUMN", help="join column of --clinical")
    parser.add_argument(
        "--stratify-by", default=None, metavar="COLUMN", help="stratify the split by a column"
    )
    parser.add_argument("--folds", type=int, default=None, help="cross-validation folds (manifest 'fold')")
    parser.add_argument("--features", action="store_true", help="radiomics features (features.parquet)")
    parser.add_argument("--split-file", default=None, metavar="FILE", help="nnU-Net splits_final.json")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show Apache Beam's own log warnings"
    )


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


_MAPPED = {
    "spacing": "--spacing",
    "label_map": "--label_map",
    "seed": "--seed",
    "limit": "--limit",
    "annotation_sources": "--annotation_sources",
    "config": "--build_config",
    "storage_options": "--storage_options",
    "input_storage_options": "--input_storage_options",
    "output_storage_options": "--output_storage_options",
    "runner": "--runner",
    "workers": "--direct_num_workers",
    "dask_address": "--dask_client_address",
    "listing_shards": "--listing_shards",
    "clinical": "--clinical",
    "clinical_key": "--clinical_key",
    "stratify_by": "--stratify_by",
    "folds": "--folds",
    "split_file": "--split_file",
}


def beam_argv(args: argparse.Namespace) -> list[str]:
    """The pipeline's argv for parsed CLI arguments (our flags first, then the pass-through ones)."""
    late = argparse.ArgumentParser(add_help=False)
    _add_flags(late)
    # Flags written after OUTPUT land in beam_args; pick ours out, leave the rest to Beam.
    args, passthrough = late.parse_known_args(args.beam_args or [], namespace=args)
    inputs = [args.input] if isinstance(args.input, str) else list(args.input)
    argv = [f"--input={','.join(inputs)}", f"--output={args.output}"]
    for dest, flag in _MAPPED.items():
        value = getattr(args, dest, None)
        if value is not None:
            argv.append(f"{flag}={value}")
    if args.dask_address and not args.runner:
        argv.append("--runner=DaskRunner")
    if args.pseudonymize:
        argv.append("--pseudonymize")
    if getattr(args, "allow_empty", False):
        argv.append("--allow_empty")
    if getattr(args, "features", False):
        argv.append("--features")
    return [*argv, *passthrough]


def run(args: argparse.Namespace) -> int:
    from hcc_shards.errors import HccShardsError, OperatorError
    from hcc_shards.text import shown
    from pipelines.build import configure_logging, format_summary, run_build

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
    from hcc_shards.idc import format_index_record
    from pipelines.options import idc_selections

    text = next((a.partition("=")[2] for a in argv if a.startswith("--input=")), "")
    for selection in idc_selections(text):
        print(f"[hcc-shards] {format_index_record(selection.record())}", file=sys.stderr, flush=True)


def _missing_input(exc: BaseException) -> str | None:
    """The listing step's message when INPUT names a prefix that does not exist, else None."""
    found = re.search(r"input '.*? does not exist or cannot be listed[^\n\[]*", str(exc))
    return found.group(0).strip() if found else None

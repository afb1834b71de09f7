"""The ``hcc-shards`` command. Each subcommand lives in hcc_shards/commands/<name>.py and is
imported only when chosen, so ``hcc-shards --help`` stays fast and thin."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, str] = {
    "synth": "Generate a synthetic HCC-TACE-Seg look-alike cohort (DICOM CT + SEG).",
    "plan": "Dry run: index INPUT, pair every SEG with its CT, print cases and quarantine reasons.",
    "build": "Build a sharded Zarr v3 dataset from a DICOM collection (Apache Beam).",
    "demo": "Generate a small cohort, build it, read patches back, print the summary.",
    "verify": "Check every stored object of a built dataset against its checksums.",
    "export": "Export a built dataset for training tools: nnU-Net raw layout or NIfTI.",
    "info": "Summarise a built dataset: version, counts by split, spacing, sizes, quarantine.",
    "ls": "List the cases of a built dataset as a table (--filter COLUMN=VALUE to select).",
    "show": "Show one case of a built dataset: its manifest row, geometry, labels, QC image.",
    "predictions": "Write a model's predictions back into a built dataset as label images.",
}

DESCRIPTION = """\
Turn a DICOM CT + DICOM-SEG collection (a local folder, gs:// or s3:// prefix) into a sharded
Zarr v3 dataset for training segmentation models, and look at the result.
"""

EPILOG = """\
examples:
  hcc-shards plan ./HCC-TACE-Seg                  what would be built, and why not
  hcc-shards build ./HCC-TACE-Seg ./hcc           build the dataset (needs the pipeline extra)
  hcc-shards info ./hcc                           counts, spacing, sizes, quarantine
  hcc-shards ls ./hcc --filter split=val          the validation cases
  hcc-shards show ./hcc HCC_001_1a2b3c4d          one case: row, geometry, labels, QC image
  hcc-shards verify ./hcc                         check every stored object
  hcc-shards predictions add ./hcc m1 --from P/   predictions as label images of source prediction
  hcc-shards demo                                 the whole thing on 8 synthetic patients

'hcc-shards COMMAND --help' describes each command. The reader-only install
(pip install .) has info, ls, show; the build commands need the pipeline extra.
"""

PIPELINE_MODULES = frozenset(
    {"apache_beam", "pydicom", "highdicom", "zarr", "scipy", "PIL", "matplotlib", "dask", "distributed"}
)
"""Top-level modules of the ``pipeline`` extra: a command that misses one names the extra to install."""
PIPELINE_EXTRA_HINT = "pip install 'hcc-shards[pipeline]'"


def _command_module(name: str):
    return importlib.import_module(f"hcc_shards.commands.{name}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from hcc_shards import __version__

    parser = argparse.ArgumentParser(
        prog="hcc-shards",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hcc-shards {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in SUBCOMMANDS.items():
        if name == chosen:
            _command_module(name).add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        return int(_command_module(args.command).run(args) or 0)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in PIPELINE_MODULES:
            raise
        chosen = next((a for a in argv if not a.startswith("-")), "")
        print(
            f"hcc-shards {chosen}: this command needs the build stack (module {exc.name!r} is not "
            f"installed); install the pipeline extra: {PIPELINE_EXTRA_HINT}",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    raise SystemExit(main())

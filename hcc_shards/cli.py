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
}


def _command_module(name: str):
    return importlib.import_module(f"hcc_shards.commands.{name}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hcc-shards", description=__doc__.splitlines()[0])
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
    args = build_parser(argv).parse_args(argv)
    return int(_command_module(args.command).run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

"""What ``info``, ``ls`` and ``show`` share: opening a built dataset through the thin reader and
formatting its values for the terminal (reader-only install: numpy, pyarrow, fsspec)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from hcc_shards.commands import add_storage_options, storage_options_of
from hcc_shards.format import LATEST_FILE, version_path

OUTPUT_HELP = f"dataset root (or one {version_path('<hash>')} folder)"
"""Help of the OUTPUT argument of every command that reads a built dataset."""


def version_help(verb: str, instead_of: str = LATEST_FILE) -> str:
    """Help of ``--version``: ``<verb> versions/<VERSION> instead of <instead_of>``."""
    return f"{verb} {version_path('<VERSION>')} instead of {instead_of}"


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """OUTPUT, ``--version`` and ``--storage-options``: how every inspecting command names a dataset."""
    parser.add_argument("output", metavar="OUTPUT", help=OUTPUT_HELP)
    parser.add_argument("--version", default=None, help=version_help("read", f"the one {LATEST_FILE} names"))
    add_storage_options(parser)


def open_for(args: argparse.Namespace, command: str) -> Any:
    """The dataset the arguments name; a dataset that cannot be opened ends the command (status 2)."""
    from hcc_shards.errors import FormatError
    from hcc_shards.read import open_dataset
    from hcc_shards.text import shown

    try:
        return open_dataset(args.output, storage_options_of(args), args.version)
    except (FormatError, OSError) as exc:
        print(f"hcc-shards {command}: cannot open {shown(args.output)}: {shown(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


def fmt_value(value: Any) -> str:
    """One manifest value as terminal text: numbers short, lists in brackets, header text escaped."""
    from hcc_shards.text import shown

    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(fmt_value(v) for v in value) + ")" if value else "()"
    return shown(value)


def fmt_zyx(values: Sequence[float] | None, fmt: str = ".4g") -> str:
    """A (z, y, x) triple as ``a x b x c``."""
    if values is None:
        return "n/a"
    return " x ".join(format(float(v), fmt) for v in values)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)

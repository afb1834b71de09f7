"""One module per CLI subcommand, each with ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
from typing import Any


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """The ``--storage-options JSON`` flag shared by the commands that touch storage."""
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        default=None,
        help='fsspec storage options as a JSON object, e.g. \'{"endpoint_url": "http://127.0.0.1:5000"}\'',
    )


def storage_options_of(args: argparse.Namespace) -> dict[str, Any] | None:
    """The parsed ``--storage-options``; a bad value ends the command with status 2 and a message."""
    from hcc_shards.errors import ConfigError
    from hcc_shards.storage import parse_storage_options

    try:
        return parse_storage_options(getattr(args, "storage_options", None), "--storage-options") or None
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None

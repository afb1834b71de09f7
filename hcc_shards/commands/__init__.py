"""One module per CLI subcommand, each with ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import json
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
    raw = getattr(args, "storage_options", None)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--storage-options must be a JSON object, got {raw!r}: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"--storage-options must be a JSON object, got {type(value).__name__}: {raw!r}")
    return value

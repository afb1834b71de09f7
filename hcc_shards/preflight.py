"""Checks of a command's INPUT and OUTPUT before any work: each mistake is one line and its own exit code.

Order (``hcc-shards build``): every URL's scheme has an installed filesystem
(:class:`~hcc_shards.errors.UnknownSchemeError`); every INPUT root exists
(:class:`~hcc_shards.errors.InputMissingError`); OUTPUT is not a file and takes a small probe
object that is written and deleted at once (:class:`~hcc_shards.errors.OutputNotWritableError`).
``hcc-shards plan`` runs the first two. fsspec only; no Beam.
"""

from __future__ import annotations

import contextlib
import posixpath
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec

from hcc_shards import storage
from hcc_shards.errors import InputMissingError, OutputNotWritableError, UnknownSchemeError
from hcc_shards.format import LATEST_FILE
from hcc_shards.text import shown

__all__ = ["DATASET_MARKER", "check_input", "check_output", "check_scheme", "drop_datasets"]

PROBE_PREFIX = ".hcc-shards-probe-"
"""Name prefix of the write probe (deleted right after it is written)."""
DATASET_MARKER = LATEST_FILE
"""A folder holding this file is a built dataset: never listed as input."""


def check_scheme(url: str, what: str) -> None:
    """Raise unless an installed fsspec filesystem handles ``url``'s scheme."""
    proto = storage.protocol_of(url)
    if proto == "file":
        return
    try:
        fsspec.get_filesystem_class(proto)
    except (ValueError, ImportError) as exc:
        raise UnknownSchemeError(
            f"{what} {shown(url)}: unknown or unavailable URL scheme {shown(proto)!r} ({type(exc).__name__}); "
            "expected a local path, gs://, s3:// or another installed fsspec protocol"
        ) from None


def check_input(roots: Iterable[str], storage_options: dict[str, Any] | None) -> None:
    """Raise unless every root is an existing object or prefix."""
    missing = []
    for root in roots:
        check_scheme(root, "INPUT")
        fs, path = storage.filesystem(root, storage_options if "://" in root else {})
        try:
            found = fs.exists(path)
        except (OSError, ValueError):
            found = False
        if not found:
            missing.append(root)
    if missing:
        names = ", ".join(shown(m) for m in missing[:5])
        raise InputMissingError(f"INPUT {names} does not exist; name a folder, prefix or file of DICOM")


def check_output(url: str, storage_options: dict[str, Any] | None) -> None:
    """Raise unless ``url`` can hold a dataset: not a file, and a probe object can be written there."""
    check_scheme(url, "OUTPUT")
    fs, path = storage.filesystem(url, storage_options)
    try:
        if fs.isfile(path):
            raise OutputNotWritableError(
                f"OUTPUT {shown(url)} is a file; name a folder or prefix where the dataset may be written"
            )
        if storage.protocol_of(url) == "file":
            fs.makedirs(path, exist_ok=True)
        probe = posixpath.join(path.rstrip("/"), f"{PROBE_PREFIX}{uuid.uuid4().hex}")
        fs.pipe_file(probe, b"probe")
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(probe)
    except OutputNotWritableError:
        raise
    except (OSError, ValueError) as exc:
        raise OutputNotWritableError(
            f"OUTPUT {shown(url)} cannot be written ({type(exc).__name__}: {shown(exc)}); check its "
            "permissions and credentials, or name another OUTPUT"
        ) from None


def drop_datasets(paths: Iterable[str]) -> list[str]:
    """``paths`` without every file under a folder that holds a built dataset (:data:`DATASET_MARKER`).

    A dataset written inside INPUT (or an earlier OUTPUT there) is never read back as input.
    """
    paths = list(paths)
    roots = [p[: -len(DATASET_MARKER)] for p in paths if p.rstrip("/").endswith("/" + DATASET_MARKER)]
    if not roots:
        return paths
    return [p for p in paths if not any(p.startswith(r) for r in roots)]

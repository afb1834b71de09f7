"""fsspec access for every data read and write: gs://, s3://, local paths, memory://.

Emulator endpoints and credentials come from ``storage_options`` or the usual environment
variables (STORAGE_EMULATOR_HOST for GCS, AWS_ENDPOINT_URL / AWS_* for S3).
"""

from __future__ import annotations

import os
from typing import Any

# gcsfs otherwise probes for hierarchical-namespace buckets and stalls for 60 s against emulators.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec


def filesystem(
    url: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it (no protocol for local paths)."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path


def protocol_of(url: str) -> str:
    proto = fsspec.utils.get_protocol(url)
    return "file" if proto in ("file", "local") else proto


def join(base: str, *parts: str) -> str:
    """Join URL parts with '/', keeping the protocol of ``base``."""
    out = base.rstrip("/")
    for p in parts:
        p = p.strip("/")
        if p:
            out = f"{out}/{p}"
    return out


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A full URL for a path returned by ``fs`` (fsspec drops the protocol)."""
    return fs.unstrip_protocol(path)

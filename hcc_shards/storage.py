"""fsspec access for every data read and write: gs://, s3://, local paths, memory://.

Emulator endpoints and credentials come from ``storage_options`` or the usual environment
variables (STORAGE_EMULATOR_HOST for GCS, AWS_ENDPOINT_URL / AWS_* for S3).

Transient errors: gcsfs and s3fs retry them inside the client, local disks and memory have
none; every other filesystem is wrapped in :class:`RetryingFileSystem`, which retries each call
that fails with a transient error (:func:`hcc_shards.retry.is_transient`) as
:data:`hcc_shards.retry.STORAGE_RETRIES` says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

# gcsfs otherwise probes for hierarchical-namespace buckets and stalls for 60 s against emulators.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec

from hcc_shards.errors import ConfigError
from hcc_shards.retry import STORAGE_RETRIES, call_with_retries

SELF_RETRYING_PROTOCOLS = frozenset({"file", "local", "memory", "gs", "gcs", "s3", "s3a"})
"""Protocols whose client retries transient errors itself (or that have none)."""


def filesystem(
    url: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it (no protocol for local paths).

    Filesystems whose client does not retry transient errors come wrapped in
    :class:`RetryingFileSystem`.
    """
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if not _protocols(fs) & SELF_RETRYING_PROTOCOLS:
        fs = RetryingFileSystem(fs)
    return fs, path


def _protocols(fs: fsspec.AbstractFileSystem) -> set[str]:
    """Every protocol name of ``fs`` (fsspec gives a string or a tuple)."""
    return {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)


class RetryingFileSystem(fsspec.AbstractFileSystem):
    """A filesystem whose every storage call is retried on transient errors (:data:`STORAGE_RETRIES`).

    Paths and protocol are those of the wrapped filesystem; calls are delegated one by one.
    """

    cachable = False
    _DELEGATED = (
        "ls",
        "info",
        "exists",
        "isfile",
        "isdir",
        "find",
        "glob",
        "size",
        "cat_file",
        "cat_ranges",
        "pipe_file",
        "rm",
        "rm_file",
        "rmdir",
        "mkdir",
        "makedirs",
        "cp_file",
        "mv",
        "touch",
        "modified",
        "created",
        "_open",
    )

    def __init__(self, fs: fsspec.AbstractFileSystem, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fs = fs
        """The wrapped filesystem."""
        self.protocol = fs.protocol
        self.root_marker = fs.root_marker
        self.sep = fs.sep
        self._strip_protocol = fs._strip_protocol  # type: ignore[method-assign]
        self._parent = fs._parent  # type: ignore[method-assign]
        for name in self._DELEGATED:
            setattr(self, name, self._retrying(getattr(fs, name)))

    @staticmethod
    def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return call_with_retries(lambda: method(*args, **kwargs), STORAGE_RETRIES)

        call.__name__ = getattr(method, "__name__", "call")
        call.__doc__ = method.__doc__
        return call

    def unstrip_protocol(self, name: str) -> str:
        return self.fs.unstrip_protocol(name)

    @property
    def fsid(self) -> str:
        return f"retrying_{self.fs.fsid}"


def put_objects(fs: fsspec.AbstractFileSystem, objects: dict[str, bytes]) -> None:
    """Store every ``path: bytes`` of ``objects`` (paths of ``fs``), creating local folders first.

    Object-store clients (gcsfs, s3fs) send the puts of one call concurrently, so a batch of small
    documents costs about one round trip instead of one per document.
    """
    if not objects:
        return
    if _protocols(fs) & {"file", "local"}:
        for parent in sorted({fs._parent(p) for p in objects}):
            fs.makedirs(parent, exist_ok=True)
    fs.pipe(dict(objects))


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


def parse_storage_options(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object (or empty) -> dict; names the flag when it is not one."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag} must be a JSON object, got {text!r} ({e})") from e
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object, got {type(value).__name__}: {text!r}")
    return value

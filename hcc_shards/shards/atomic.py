"""Whole-object writes that a reader never sees half done, on any fsspec filesystem."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from hcc_shards import storage

__all__ = ["exists", "put_bytes_atomic", "put_json_atomic", "read_json"]


def put_bytes_atomic(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``data`` to ``url``: local files via a temporary sibling and a rename, object stores in
    one put (an object PUT is atomic on GCS and S3: readers see the old object or the new one)."""
    fs, path = storage.filesystem(url, storage_options)
    if storage.protocol_of(url) == "file":
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    fs.pipe_file(path, data)


def put_json_atomic(url: str, obj: Any, storage_options: dict[str, Any] | None = None) -> None:
    put_bytes_atomic(
        url, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode(), storage_options
    )


def read_json(url: str, storage_options: dict[str, Any] | None = None) -> Any | None:
    """The JSON object at ``url``, or None when there is no such object."""
    fs, path = storage.filesystem(url, storage_options)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    return json.loads(data)


def exists(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = storage.filesystem(url, storage_options)
    return bool(fs.exists(path))

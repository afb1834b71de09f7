"""An optional local disk cache of fetched byte ranges, with a size limit and LRU eviction.

Entries are immutable (a dataset version never changes its bytes, and every chunk is checked
by crc32c after it is read), so the cache needs no invalidation. Several processes (DataLoader
workers, ranks on one host) may share one directory: entries are written to a temporary name and
renamed, and eviction tolerates files that another process removed first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class CacheSettings:
    """Where and how much to cache."""

    directory: str
    """Local directory of the cache (created on first use)."""
    max_bytes: int
    """Size limit; when exceeded, the least recently used entries are removed."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"CacheSettings.max_bytes must be positive, got {self.max_bytes}")


class DiskCache:
    """Byte ranges of remote objects, one file per range, evicted by last use (mtime)."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._approx_bytes: int | None = None
        self.hits = 0
        self.misses = 0

    def _path(self, url: str, start: int, end: int) -> str:
        digest = hashlib.sha1(f"{url}\0{start}\0{end}".encode()).hexdigest()
        return os.path.join(self.settings.directory, digest[:2], digest[2:])

    def get(self, url: str, start: int, end: int) -> bytes | None:
        """The cached bytes of ``url[start:end]``, or None."""
        path = self._path(url, start, end)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.misses += 1
            return None
        if len(data) != end - start:  # a torn entry from a crashed writer: drop it
            self.discard(url, start, end)
            self.misses += 1
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)
        self.hits += 1
        return data

    def put(self, url: str, start: int, end: int, data: bytes | memoryview) -> None:
        """Store ``data`` as ``url[start:end]``, then evict if the cache is over its limit."""
        path = self._path(url, start, end)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        with self._lock:
            if self._approx_bytes is None:
                self._approx_bytes = self.size_bytes()
            else:
                self._approx_bytes += len(data)
            over = self._approx_bytes > self.settings.max_bytes
        if over:
            self.evict()

    def discard(self, url: str, start: int, end: int) -> None:
        """Remove one entry (for example one that failed its checksum)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(url, start, end))

    def _entries(self) -> list[tuple[float, int, str]]:
        out = []
        root = self.settings.directory
        if not os.path.isdir(root):
            return out
        for sub in os.scandir(root):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                if e.name.startswith(".tmp-"):
                    continue
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, st.st_size, e.path))
        return out

    def size_bytes(self) -> int:
        """Bytes held now (scans the directory)."""
        return sum(size for _, size, _ in self._entries())

    def evict(self) -> None:
        """Remove the least recently used entries until the cache holds at most 90% of its limit."""
        with self._lock:
            entries = sorted(self._entries())
            total = sum(size for _, size, _ in entries)
            target = int(self.settings.max_bytes * 0.9)
            for _, size, path in entries:
                if total <= target:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
            self._approx_bytes = total

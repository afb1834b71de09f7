"""Byte access for the reader: whole small objects and batches of byte ranges, through fsspec.

Local files are read with ``os.pread`` (no Python file objects, safe from several threads).
Object stores get one ``fs.cat_ranges`` call per batch, so an async filesystem (gcsfs, s3fs)
fetches the ranges concurrently; neighbouring ranges of one object are merged first.
Transient errors (:func:`hcc_shards.retry.is_transient`) are retried with exponential backoff and
jitter (:class:`hcc_shards.retry.RetryPolicy`, from :class:`IOSettings`). Every filesystem client and
file descriptor belongs to the process that made it: after a fork (DataLoader workers) the
child makes its own on first use.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import fsspec

from hcc_shards.read.cache import CacheSettings, DiskCache
from hcc_shards.retry import RetryPolicy, call_with_retries, is_transient

T = TypeVar("T")

_MAX_OPEN = 256
"""Local files kept open (mapped) per process; the oldest is let go beyond this (descriptor limits)."""
_FORKS = [0]
"""Forks this process descends from; a change means the per-process state is stale. Cheaper than
``os.getpid()``, which is a system call, on the per-chunk path."""


def _forked() -> None:
    _FORKS[0] += 1


os.register_at_fork(after_in_child=_forked)


@dataclass(frozen=True)
class IOSettings:
    """How the reader talks to storage."""

    max_concurrency: int = 32
    """Byte ranges in flight at once per batch on object stores."""
    max_batches_in_flight: int = 4
    """Batches (one per patch) fetched at once by one process's reader threads; the rest wait."""
    coalesce_gap: int = 16 * 1024
    """Ranges of one object closer than this many bytes are fetched as one request."""
    retries: int = 5
    """Retries of a transient storage error before it is raised."""
    backoff_s: float = 0.05
    """First retry delay; it doubles on each retry, up to ``max_backoff_s``, less a random part of up
    to half."""
    max_backoff_s: float = 5.0
    """Longest retry delay."""
    cache: CacheSettings | None = None
    """Optional local disk cache of fetched ranges (object stores only; local files are not cached)."""
    use_mmap: bool = True
    """Read local files through read-only memory maps (no system call or copy per range) instead of
    ``os.pread``. Dataset versions are immutable; a file truncated while mapped would fault."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.max_batches_in_flight < 1:
            raise ValueError(
                "IOSettings.max_concurrency and max_batches_in_flight must be >= 1, got "
                f"{self.max_concurrency} and {self.max_batches_in_flight}"
            )
        if self.coalesce_gap < 0 or self.retries < 0 or self.backoff_s < 0:
            raise ValueError(
                "IOSettings.coalesce_gap, retries and backoff_s must be >= 0, got "
                f"{self.coalesce_gap}, {self.retries}, {self.backoff_s}"
            )


@dataclass
class IOStats:
    """Counters of one process's reads (for benchmarks and tests)."""

    requests: int = 0
    """Storage requests issued (after merging neighbouring ranges)."""
    bytes: int = 0
    """Bytes fetched from storage (cache hits excluded)."""
    retries: int = 0
    """Transient errors that were retried."""


class ByteStore:
    """Reads objects under one root URL; cheap to pickle (clients are made lazily per process)."""

    def __init__(
        self,
        root_url: str,
        storage_options: dict[str, Any] | None = None,
        settings: IOSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.root_url = root_url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.settings = settings or IOSettings()
        self._sleep = sleep
        self._pid = -1
        self._forks = -1
        self._init_process_state()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "root_url": self.root_url,
            "storage_options": self.storage_options,
            "settings": self.settings,
            "sleep": self._sleep,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["root_url"], state["storage_options"], state["settings"], sleep=state["sleep"]
        )

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._forks = _FORKS[0]
        self._fs_obj: fsspec.AbstractFileSystem | None = None
        self._local: bool | None = None
        self._root: str = ""
        self._fds: dict[str, int] = {}
        self._maps: dict[str, memoryview] = {}
        self._lock = threading.Lock()
        self._in_flight = threading.BoundedSemaphore(self.settings.max_batches_in_flight)
        self._cache = DiskCache(self.settings.cache) if self.settings.cache else None
        self.stats = IOStats()

    def _check_pid(self) -> None:
        if self._forks != _FORKS[0]:
            # Forked: the parent's clients, event loop threads and descriptors are not ours.
            self._init_process_state()

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """This process's filesystem client (made on first use)."""
        self._check_pid()
        if self._fs_obj is None:
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            fs, root = fsspec.core.url_to_fs(self.root_url, **self.storage_options)
            self._fs_obj, self._root = fs, root.rstrip("/")
        return self._fs_obj

    @property
    def is_local(self) -> bool:
        """Whether reads go to the local filesystem (memory maps or ``os.pread``)."""
        if self._local is None or self._forks != _FORKS[0]:
            protocol = self.fs.protocol
            protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
            self._local = "file" in protocols or "local" in protocols
        return self._local

    def path(self, rel: str) -> str:
        """Filesystem path of ``rel`` (relative to the root)."""
        _ = self.fs
        return f"{self._root}/{rel.strip('/')}" if rel else self._root

    def url(self, rel: str) -> str:
        """Full URL of ``rel``, for messages."""
        return f"{self.root_url}/{rel.strip('/')}" if rel else self.root_url

    def with_root(self, rel: str) -> ByteStore:
        """A store rooted at ``rel`` below this one, with the same options."""
        return ByteStore(self.url(rel), self.storage_options, self.settings, sleep=self._sleep)

    # -- retries -------------------------------------------------------------------------------

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retries of this store's storage calls (from its settings)."""
        return RetryPolicy(
            attempts=self.settings.retries + 1,
            base_delay_s=self.settings.backoff_s,
            max_delay_s=self.settings.max_backoff_s,
        )

    def _retrying(self, fn: Callable[[], T]) -> T:
        return call_with_retries(fn, self.retry_policy, sleep=self._sleep, on_retry=self._count_retry)

    def _count_retry(self, exc: BaseException, retry: int) -> None:
        self.stats.retries += 1

    # -- whole objects -------------------------------------------------------------------------

    def read(self, rel: str) -> bytes | None:
        """The bytes of one object, or None when it does not exist."""
        return self.read_many([rel])[0]

    def read_many(self, rels: Sequence[str]) -> list[bytes | None]:
        """The bytes of several objects (None for missing ones), fetched together."""
        if not rels:
            return []
        paths = [self.path(r) for r in rels]
        if self.is_local:
            return [self._read_local_file(p) for p in paths]
        results = self._retrying(lambda: self._cat(paths))
        self.stats.requests += len(paths)
        out: list[bytes | None] = []
        for p in paths:
            data = results.get(p)
            if isinstance(data, Exception):
                if isinstance(data, FileNotFoundError):
                    out.append(None)
                    continue
                raise data
            self.stats.bytes += len(data or b"")
            out.append(data)
        return out

    def _cat(self, paths: list[str]) -> dict[str, Any]:
        with self._in_flight:
            results = self.fs.cat(paths, on_error="return")
        if not isinstance(results, dict):  # one path: fsspec returns the bytes themselves
            results = {paths[0]: results}
        for value in results.values():
            if isinstance(value, Exception) and is_transient(value):
                raise value
        return results

    def _read_local_file(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        self.stats.requests += 1
        self.stats.bytes += len(data)
        return data

    def list_names(self, rel: str) -> list[str]:
        """Names of the objects directly under the folder ``rel``, sorted; empty when there is none.

        Asks the store itself (its listing cache is dropped first), so an object put a moment ago
        by another client is listed."""
        path = self.path(rel)
        if self.is_local:
            try:
                with os.scandir(path) as entries:
                    return sorted(e.name for e in entries if e.is_file())
            except (FileNotFoundError, NotADirectoryError):
                return []

        def ls() -> list[dict[str, Any]]:
            self.fs.invalidate_cache(path)
            try:
                return list(self.fs.ls(path, detail=True))
            except FileNotFoundError:
                return []

        entries = self._retrying(ls)
        self.stats.requests += 1
        return sorted(
            str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file"
        )

    # -- byte ranges -------------------------------------------------------------------------------

    def read_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[memoryview | None]:
        """``[(rel, start, end), ...]`` -> the bytes of each range (None when the object is missing).

        Ranges of one object that lie within ``coalesce_gap`` bytes of each other are fetched with
        one request; on object stores all requests go out together through ``fs.cat_ranges``, and
        the disk cache (if any) is consulted and filled per requested range.
        """
        out: list[memoryview | None] = [None] * len(requests)
        if not requests:
            return out
        local = self.is_local
        cache = None if local else self._cache
        todo = list(range(len(requests)))
        if cache is not None:
            todo = []
            for i, (rel, s, e) in enumerate(requests):
                hit = cache.get(self.url(rel), s, e)
                if hit is None:
                    todo.append(i)
                else:
                    out[i] = memoryview(hit)
        merged = _merge_ranges([requests[i] for i in todo], self.settings.coalesce_gap)
        if local and self.settings.use_mmap:
            blobs = [self._mapped(self.path(rel), s, e) for rel, s, e, _ in merged]
        elif local:
            blobs = [self._pread(self.path(rel), s, e) for rel, s, e, _ in merged]
        else:
            blobs = self._remote_ranges([(rel, s, e) for rel, s, e, _ in merged])
        for (_, s, _e, members), blob in zip(merged, blobs, strict=True):
            if blob is None:
                continue
            view = memoryview(blob)
            for j in members:
                i = todo[j]
                rel, rs, re_ = requests[i]
                part = view[rs - s : re_ - s]
                out[i] = part
                if cache is not None and len(part) == re_ - rs:
                    cache.put(self.url(rel), rs, re_, part)
        return out

    def _fd(self, path: str) -> int | None:
        fd = self._fds.get(path)
        if fd is None:
            with self._lock:
                fd = self._fds.get(path)
                if fd is None:
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except (FileNotFoundError, NotADirectoryError):
                        return None
                    if len(self._fds) >= _MAX_OPEN:
                        # A reader still using it gets EBADF, which is retried with a fresh descriptor.
                        with contextlib.suppress(OSError):
                            os.close(self._fds.pop(next(iter(self._fds))))
                    self._fds[path] = fd
        return fd

    def _mapped(self, path: str, start: int, end: int) -> memoryview | None:
        self._check_pid()
        view = self._maps.get(path)
        if view is None:
            with self._lock:
                view = self._maps.get(path)
                if view is None:
                    try:
                        fd = os.open(path, os.O_RDONLY)
                    except (FileNotFoundError, NotADirectoryError):
                        return None
                    try:
                        size = os.fstat(fd).st_size
                        # mmap keeps its own descriptor; an empty file cannot be mapped.
                        view = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if size else b"")
                    finally:
                        os.close(fd)
                    if len(self._maps) >= _MAX_OPEN:
                        # The map closes once no chunk decoded from it is referenced any more.
                        self._maps.pop(next(iter(self._maps)))
                    self._maps[path] = view
        self.stats.requests += 1
        part = view[start:end]
        self.stats.bytes += len(part)
        return part

    def _pread(self, path: str, start: int, end: int) -> bytes | None:
        self._check_pid()
        if self._fd(path) is None:
            return None
        data = self._retrying(lambda: self._pread_once(path, start, end))
        self.stats.requests += 1
        self.stats.bytes += len(data)
        return data

    def _pread_once(self, path: str, start: int, end: int) -> bytes:
        try:
            return os.pread(self._fd(path), end - start, start)  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
        # Another thread let the descriptor go (beyond _MAX_OPEN); a fresh one is opened.
        return os.pread(self._fd(path), end - start, start)  # type: ignore[arg-type]

    def _remote_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes | None]:
        out: list[bytes | None] = [None] * len(ranges)
        todo = list(range(len(ranges)))

        def fetch_todo() -> None:
            # One cat_ranges call for the ranges still missing; those that failed transiently stay
            # in ``todo`` and the first such error is raised, so only they are fetched again.
            nonlocal todo
            paths = [self.path(ranges[i][0]) for i in todo]
            starts = [ranges[i][1] for i in todo]
            ends = [ranges[i][2] for i in todo]
            kwargs: dict[str, Any] = {"on_error": "return"}
            if getattr(self.fs, "async_impl", False):
                kwargs["batch_size"] = self.settings.max_concurrency
            with self._in_flight:
                blobs = self.fs.cat_ranges(paths, starts, ends, **kwargs)
            self.stats.requests += len(todo)
            failed: list[int] = []
            error: BaseException | None = None
            for i, blob in zip(todo, blobs, strict=True):
                if isinstance(blob, Exception):
                    if isinstance(blob, FileNotFoundError):
                        continue
                    if not is_transient(blob):
                        raise blob
                    failed.append(i)
                    error = error or blob
                    continue
                self.stats.bytes += len(blob)
                out[i] = blob
            todo = failed
            if error is not None:
                raise error

        if todo:
            self._retrying(fetch_todo)
        return out

    @property
    def has_cache(self) -> bool:
        """Whether ranges are cached on local disk (object stores with a cache configured)."""
        self._check_pid()
        return self._cache is not None and not self.is_local

    def discard_cached(self, rel: str, start: int, end: int) -> None:
        """Forget a cached range (after it failed its checksum)."""
        self._check_pid()
        if self._cache is not None:
            self._cache.discard(self.url(rel), start, end)

    def close(self) -> None:
        """Close this process's file descriptors."""
        if self._pid != os.getpid():
            return
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        # Maps close when the last array decoded from them is gone.
        self._maps.clear()


def _merge_ranges(
    requests: Sequence[tuple[str, int, int]], gap: int
) -> list[tuple[str, int, int, list[int]]]:
    """Group requests into (rel, start, end, member indices), merging close ranges of one object."""
    order = sorted(range(len(requests)), key=lambda i: (requests[i][0], requests[i][1]))
    merged: list[tuple[str, int, int, list[int]]] = []
    cur_rel, cur_s, cur_e, members = None, 0, 0, []
    for i in order:
        rel, s, e = requests[i]
        if rel == cur_rel and s - cur_e <= gap:
            members.append(i)
            cur_e = max(cur_e, e)
            continue
        if cur_rel is not None:
            merged.append((cur_rel, cur_s, cur_e, members))
        cur_rel, cur_s, cur_e, members = rel, s, e, [i]
    if cur_rel is not None:
        merged.append((cur_rel, cur_s, cur_e, members))
    return merged

"""A filesystem that fails like a bad day on an object store: for reliability tests and drills.

``flaky://<path>`` reaches ``<path>`` on a target filesystem (local by default) through
:class:`FlakyFileSystem`, which adds latency to every call and fails a fraction of them with a
transient error (``ConnectionResetError`` or ``TimeoutError``), and fails every read of chosen
paths with a permanent ``PermissionError``. Whether a call fails is a pure function of the seed,
the operation, the path and how many times that operation was called on that path before, so a
run is reproducible whatever the thread interleaving.

    import hcc_shards.flaky  # registers the protocol
    options = {"target_protocol": "file", "fail_rate": 0.05, "latency_s": 0.002, "seed": 7}
    fs, path = hcc_shards.storage.filesystem("flaky:///data/in", options)

Like an object store it has no folders to create: writes make their parent directories.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import fsspec

__all__ = ["PROTOCOL", "FlakyFileSystem", "InjectedPermanentError", "InjectedTransientError", "register"]

PROTOCOL = "flaky"


class InjectedTransientError(ConnectionResetError):
    """A transient failure injected by :class:`FlakyFileSystem` (a reset connection)."""


class InjectedTimeout(TimeoutError):
    """A transient failure injected by :class:`FlakyFileSystem` (a timeout)."""


class InjectedPermanentError(PermissionError):
    """A permanent failure injected by :class:`FlakyFileSystem` on a chosen path."""


_READS = frozenset({"cat_file", "cat_ranges", "_open", "info", "size"})
_OPERATIONS = (
    "ls",
    "info",
    "exists",
    "isfile",
    "isdir",
    "find",
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
    "_open",
)


class FlakyFileSystem(fsspec.AbstractFileSystem):
    """Delegates to a target filesystem, with latency, transient failures and permanent ones."""

    protocol = PROTOCOL
    root_marker = "/"

    def __init__(
        self,
        target_protocol: str = "file",
        target_options: dict[str, Any] | None = None,
        fail_rate: float = 0.05,
        latency_s: float = 0.0,
        seed: int = 0,
        permanent: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        """``permanent``: substrings of paths whose every read fails with a PermissionError."""
        super().__init__(**kwargs)
        if not 0.0 <= fail_rate < 1.0:
            raise ValueError(f"fail_rate must be in [0, 1), got {fail_rate}")
        options = dict(target_options or {})
        if target_protocol in ("file", "local"):
            options.setdefault("auto_mkdir", True)
        self.target = fsspec.filesystem(target_protocol, **options)
        """The filesystem that holds the data."""
        self.fail_rate = float(fail_rate)
        self.latency_s = float(latency_s)
        self.seed = int(seed)
        self.permanent = tuple(permanent)
        self.calls: Counter[str] = Counter()
        """Calls per operation."""
        self.failures: Counter[str] = Counter()
        """Injected transient failures per operation."""
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        for name in _OPERATIONS:
            setattr(self, name, self._flaky(name, getattr(self.target, name)))

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.rstrip("/") or "/"

    @property
    def fsid(self) -> str:
        return f"{PROTOCOL}-{self.seed}"

    def _flaky(self, op: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            path = self._strip_protocol(args[0]) if args else ""
            key = path if isinstance(path, str) else ",".join(path)
            if self.latency_s:
                time.sleep(self.latency_s * (0.5 + self._uniform(op, key, -1)))
            with self._lock:
                n = self._seen[(op, key)]
                self._seen[(op, key)] += 1
                self.calls[op] += 1
            if op in _READS and any(p in key for p in self.permanent):
                raise InjectedPermanentError(f"{key}: access denied (injected permanent error)")
            u = self._uniform(op, key, n)
            if u < self.fail_rate:
                with self._lock:
                    self.failures[op] += 1
                if u < self.fail_rate / 2:
                    raise InjectedTransientError(f"{op} {key}: connection reset (injected, call {n + 1})")
                raise InjectedTimeout(f"{op} {key}: timed out (injected, call {n + 1})")
            return method(*args, **kwargs)

        call.__name__ = op
        return call

    def _uniform(self, op: str, key: str, n: int) -> float:
        digest = hashlib.sha256(f"{self.seed}\0{op}\0{key}\0{n}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64


def register() -> None:
    """Make ``flaky://`` URLs resolve to :class:`FlakyFileSystem` (done on import)."""
    fsspec.register_implementation(PROTOCOL, FlakyFileSystem, clobber=True)


register()

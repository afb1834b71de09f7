"""One build at a time per OUTPUT: a lease object at ``OUTPUT/.hcc-shards-lease.json``.

The launcher takes the lease after its preflight checks and before any work, renews it while the
engine runs and deletes it when the run ends (crash included). A second build into the same OUTPUT
finds a live lease and waits up to ``--lock-wait`` seconds, then stops with one line
(:class:`~hcc_shards.errors.OutputLockedError`, exit 7).

A lease is live until its ``expires_at`` (written ``ttl_s`` after the last renewal, wall clock of
the holder) unless its holder runs on this host and its process is gone, which frees it at once.
A build killed on another machine therefore blocks OUTPUT for at most one TTL.

Taking a lease is write, wait, read back: a taker writes its record where none is live, waits
``SETTLE_S`` and keeps the lease only if the record it reads back is its own. Two takers that both
saw no lease both write; the later write wins and the earlier taker reads the winner's record back
and goes on waiting. This needs only whole-object writes and read-after-write consistency, which
local disks, GCS and S3 all give (object preconditions are not used: gcp-storage-emulator ignores
them), and it holds as long as a taker writes within ``SETTLE_S`` of having read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hcc_shards import storage
from hcc_shards.errors import OutputLockedError
from hcc_shards.format import LEASE_FILE
from hcc_shards.shards.atomic import put_json_atomic
from hcc_shards.text import shown

log = logging.getLogger(__name__)

LEASE_TTL_S = 120.0
"""How long a lease lives without renewal. The holder renews it every ``LEASE_TTL_S / 4``."""
SETTLE_S = 1.0
"""Wait between writing a lease and reading it back (see the module docstring)."""
POLL_S = 2.0
"""How often a waiting build looks at the lease again."""


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (one that is not ours to signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class LeaseRecord:
    """What the lease object holds."""

    owner: str
    """Random id of the holding build (one per :class:`Lease`)."""
    host: str
    pid: int
    acquired_at: float
    """Unix time the lease was taken."""
    expires_at: float
    """Unix time after which the lease is free unless renewed."""

    @classmethod
    def from_json(cls, data: bytes) -> LeaseRecord | None:
        """The record in ``data``; None for anything that is not one (a torn or foreign file is no lease)."""
        try:
            obj = json.loads(data)
            return cls(
                owner=str(obj["owner"]),
                host=str(obj["host"]),
                pid=int(obj["pid"]),
                acquired_at=float(obj["acquired_at"]),
                expires_at=float(obj["expires_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def live(self, now: float) -> bool:
        """Whether this lease still keeps other builds out at ``now``."""
        if now >= self.expires_at:
            return False
        return not (self.host == socket.gethostname() and not process_alive(self.pid))

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.acquired_at))
        return f"host {shown(self.host)} pid {self.pid} since {since}"


class Lease:
    """The lease of one build on ``output_url``; use as a context manager or acquire/release."""

    def __init__(
        self,
        output_url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        ttl_s: float = LEASE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.output_url = output_url
        self.url = storage.join(output_url, LEASE_FILE)
        self.storage_options = dict(storage_options or {})
        self.ttl_s = float(ttl_s)
        self.owner = uuid.uuid4().hex
        self.lost = False
        """Set when a renewal found another build's record: this build ran past its TTL unrenewed."""
        self._clock = clock
        self._acquired_at = 0.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def read(self) -> LeaseRecord | None:
        """The record now stored, or None."""
        fs, path = storage.filesystem(self.url, self.storage_options)
        try:
            data = fs.cat_file(path)
        except FileNotFoundError:
            return None
        return LeaseRecord.from_json(data)

    def _write(self) -> None:
        now = self._clock()
        record = LeaseRecord(
            self.owner, socket.gethostname(), os.getpid(), self._acquired_at, now + self.ttl_s
        )
        put_json_atomic(self.url, asdict(record), self.storage_options)

    def acquire(self, wait_s: float = 0.0) -> Lease:
        """Take the lease, waiting up to ``wait_s`` seconds for a live one to end; else raise
        :class:`OutputLockedError`. Starts the renewal thread."""
        deadline = time.monotonic() + max(0.0, float(wait_s))
        while True:
            held = self.read()
            if held is None or not held.live(self._clock()):
                self._acquired_at = self._clock()
                self._write()
                time.sleep(SETTLE_S)
                back = self.read()
                if back is not None and back.owner == self.owner:
                    self._start_renewal()
                    return self
                held = back
            if time.monotonic() >= deadline:
                who = held.describe() if held else "another build"
                raise OutputLockedError(
                    f"OUTPUT {shown(self.output_url)} is being built by {who}; wait for that build, pass "
                    f"--lock-wait SECONDS to wait for it, or delete {shown(self.url)} if it is gone "
                    f"(a lease expires {self.ttl_s:g} s after its last renewal)"
                )
            time.sleep(min(POLL_S, max(0.05, deadline - time.monotonic())))

    def renew(self) -> bool:
        """Extend the lease; False (and :attr:`lost` set) when the stored record is not ours."""
        held = self.read()
        if held is None or held.owner != self.owner:
            if not self.lost:
                log.error(
                    "the lease on %s was taken by %s while this build ran; another build may be "
                    "writing OUTPUT",
                    shown(self.output_url),
                    held.describe() if held else "nobody",
                )
            self.lost = True
            return False
        self._write()
        return True

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
            self._renewer = None
        held = self.read()
        if held is not None and held.owner == self.owner:
            fs, path = storage.filesystem(self.url, self.storage_options)
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)

    def _start_renewal(self) -> None:
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="hcc-shards-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.renew()
            except Exception as exc:  # a failed renewal is retried at the next tick
                log.warning("renewing the lease on %s failed: %s", shown(self.output_url), shown(exc))

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

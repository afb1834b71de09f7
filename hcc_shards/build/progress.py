"""Build progress by stage: what workers leave in the launcher's progress directory, and how the
launcher shows it (a tqdm bar on a terminal, plain lines in a log or CI).

Workers of a local runner share the launcher's disk, so each stage leaves small files under
``BuildPlan.progress_dir`` (never under the output, and never through Beam metrics):

- ``listing/<task>``: one per finished listing task, holding the number of files it listed;
- ``index/<pid>``: one byte appended per header read by that process;
- ``pair/<hash of PatientID>``: one per patient paired;
- ``done/<case_id>`` and ``total.json``: one per case built (or found complete), and the number
  of cases selected;
- ``commit``: present once the commit step has started; ``summary.json`` once it has ended.

Files named by a task, a patient or a case stay correct when Beam retries a bundle; the index
count of a retried bundle may run ahead and is capped at the number of files listed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

STAGES: tuple[str, ...] = ("listing", "index", "pair", "cases", "commit")
"""Stages in the order a build runs them."""
UNITS = {"listing": "tasks", "index": "files", "pair": "patients", "cases": "cases", "commit": "steps"}
"""What each stage counts."""


# -- worker side -------------------------------------------------------------------------


def _touch(path: str, content: bytes = b"") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)


def mark_listed(progress_dir: str | None, task: int, files: int) -> None:
    """Listing task ``task`` is done and listed ``files`` objects."""
    if progress_dir:
        _touch(os.path.join(progress_dir, "listing", str(task)), str(int(files)).encode())


def mark_indexed(progress_dir: str | None) -> None:
    """One more header read by this process."""
    if progress_dir:
        folder = os.path.join(progress_dir, "index")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, str(os.getpid())), "ab") as f:
            f.write(b".")


def mark_paired(progress_dir: str | None, patient_id: str) -> None:
    """One more patient paired (the name is a hash: no identifier lands on disk)."""
    if progress_dir:
        name = hashlib.sha1(patient_id.encode("utf-8", "surrogateescape")).hexdigest()[:20]
        _touch(os.path.join(progress_dir, "pair", name))


def mark_commit(progress_dir: str | None) -> None:
    """The commit step has started."""
    if progress_dir:
        _touch(os.path.join(progress_dir, "commit"))


def mark_done(progress_dir: str | None, case_id: str) -> None:
    """One more case built, resumed or set aside (named by a hash: any case id gives a file name)."""
    if progress_dir:
        name = hashlib.sha1(case_id.encode("utf-8", "surrogateescape")).hexdigest()
        _touch(os.path.join(progress_dir, "done", name))


def write_total(progress_dir: str | None, cases: int) -> None:
    """The number of cases selected, once the target is resolved."""
    if progress_dir:
        write_json(os.path.join(progress_dir, "total.json"), {"cases": int(cases)})


def write_json(path: str, obj: Any) -> None:
    """A small JSON file in the progress directory, replaced atomically."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, sort_keys=True)
    os.replace(tmp, path)


def cases_progress(progress_dir: str) -> tuple[int, int | None]:
    """(cases done, cases total or None while unknown) from a progress directory."""
    done_dir = os.path.join(progress_dir, "done")
    done = len(os.listdir(done_dir)) if os.path.isdir(done_dir) else 0
    try:
        with open(os.path.join(progress_dir, "total.json")) as f:
            total = int(json.load(f)["cases"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        total = None
    return done, total


# -- launcher side -----------------------------------------------------------------------


@dataclass(frozen=True)
class StageCount:
    """Where one stage stands."""

    stage: str
    """One of :data:`STAGES`."""
    done: int
    """Units done."""
    total: int | None
    """Units to do, None while unknown."""


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(folder) if not e.name.endswith(".tmp")]
    except FileNotFoundError:
        return []


def read_stages(progress_dir: str, listing_tasks: int) -> list[StageCount]:
    """The stages that have started, in order (the last one is the current stage)."""
    import json

    listing = _entries(os.path.join(progress_dir, "listing"))
    out = [StageCount("listing", len(listing), listing_tasks)]
    files: int | None = None
    if len(listing) >= listing_tasks:
        files = 0
        for e in listing:
            with open(e.path, "rb") as f:
                files += int(f.read() or 0)
    indexed = sum(e.stat().st_size for e in _entries(os.path.join(progress_dir, "index")))
    if indexed or files is not None:
        out.append(StageCount("index", min(indexed, files) if files is not None else indexed, files))
    paired = len(_entries(os.path.join(progress_dir, "pair")))
    total: int | None = None
    try:
        with open(os.path.join(progress_dir, "total.json")) as f:
            total = int(json.load(f)["cases"])
    except (FileNotFoundError, ValueError, KeyError):
        pass
    if paired or total is not None:
        # The case total is known once every patient is paired: the pair stage is over then.
        out.append(StageCount("pair", paired, paired if total is not None else None))
    done = len(_entries(os.path.join(progress_dir, "done")))
    if done or total is not None:
        out.append(StageCount("cases", done, total))
    committed = os.path.exists(os.path.join(progress_dir, "summary.json"))
    if committed or os.path.exists(os.path.join(progress_dir, "commit")):
        out.append(StageCount("commit", int(committed), 1))
    return out


def _eta(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def plain_line(count: StageCount, elapsed_s: float) -> str:
    """``[hcc-shards] index 312/477 files, 85.3/s, ETA 2s``: one stage as a log line."""
    unit = UNITS[count.stage]
    shown = f"{count.done}/{'?' if count.total is None else count.total} {unit}"
    parts = [f"[hcc-shards] {count.stage} {shown}"]
    if elapsed_s > 0 and count.done:
        rate = count.done / elapsed_s
        parts.append(f"{rate:.3g}/s")
        if count.total is not None and count.total > count.done:
            parts.append(f"ETA {_eta((count.total - count.done) / rate)}")
    return ", ".join(parts)


def use_bar(stream: IO[str]) -> bool:
    """A bar on an interactive terminal; plain lines in a pipe, a log file or CI."""
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ProgressView:
    """Shows the stages of a build as they advance; :meth:`update` is called with fresh counts.

    Plain mode prints a line when a stage starts, ends, or advances after ``every_s`` seconds;
    bar mode keeps one tqdm bar for the current stage. Either way a state is shown once: the
    final :meth:`close` adds nothing that was already printed.
    """

    def __init__(self, stream: IO[str] | None = None, *, bar: bool | None = None, every_s: float = 5.0):
        self.stream = stream if stream is not None else sys.stderr
        self.bar_mode = use_bar(self.stream) if bar is None else bar
        self.every_s = every_s
        self._started: dict[str, float] = {}
        self._shown: dict[str, tuple[int, int | None]] = {}
        self._last_print = 0.0
        self._bar: Any = None
        self._bar_stage: str | None = None
        self._lock = threading.Lock()

    def update(self, counts: list[StageCount], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for c in counts:
                self._started.setdefault(c.stage, now)
            if self.bar_mode:
                self._update_bar(counts)
            else:
                self._update_plain(counts, now)

    def _update_plain(self, counts: list[StageCount], now: float) -> None:
        for i, c in enumerate(counts):
            state = (c.done, c.total)
            if self._shown.get(c.stage) == state:
                continue
            finished = c.total is not None and c.done >= c.total
            current = i == len(counts) - 1
            first = c.stage not in self._shown
            if finished or first or (current and now - self._last_print >= self.every_s):
                print(plain_line(c, now - self._started[c.stage]), file=self.stream, flush=True)
                self._shown[c.stage] = state
                self._last_print = now

    def _update_bar(self, counts: list[StageCount]) -> None:
        from tqdm import tqdm

        for c in counts:
            if self._shown.get(c.stage) == (c.done, c.total):
                continue
            if self._bar_stage != c.stage:
                self._close_bar()
                self._bar = tqdm(
                    total=c.total,
                    desc=f"[hcc-shards] {c.stage}",
                    unit=f" {UNITS[c.stage]}",
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                )
                self._bar_stage = c.stage
            if self._bar.total != c.total:
                self._bar.total = c.total
            self._bar.update(c.done - self._bar.n)
            self._shown[c.stage] = (c.done, c.total)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_stage = None

    def close(self, counts: list[StageCount] | None = None) -> None:
        """Show the last counts (what has not been shown yet) and end the bar."""
        if counts:
            now = time.monotonic()
            with self._lock:
                for c in counts:
                    self._started.setdefault(c.stage, now)
                if self.bar_mode:
                    self._update_bar(counts)
                else:
                    self._last_print = -float("inf")  # the final state is printed, not throttled
                    self._update_plain(counts, now)
        with self._lock:
            self._close_bar()


def watch(
    read: Callable[[], list[StageCount]], view: ProgressView, stop: threading.Event, every_s: float = 0.5
) -> None:
    """Poll ``read`` into ``view`` until ``stop`` is set (the launcher's progress thread)."""
    while not stop.wait(every_s):
        view.update(read())

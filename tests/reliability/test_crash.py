"""Crash mid-build: ``kill -9`` at random moments, then rerun. The final output is identical to a
clean build's, and a reader polling all along never lists a case that is incomplete."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from reliability_helpers import assert_same_output, build_command, child_env

from hcc_shards.read import open_dataset
from hcc_shards.verify import verify_case

CI_SEEDS = (5,)
"""Two kills: one with two cases complete, one while the first case is being written."""
SOAK_SEEDS = tuple(s for s in range(1, 14) if s not in CI_SEEDS)


@dataclass
class ReaderPoll:
    """Opens OUTPUT as a training job would, over and over, checking every case it lists."""

    output: Path
    polls: int = 0
    listed: int = 0
    problems: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ReaderPoll:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(0.02)

    def poll(self) -> None:
        self.polls += 1
        if not (self.output / "LATEST.json").exists():
            return  # nothing committed: a reader finds no dataset, which is right
        try:
            ds = open_dataset(str(self.output))
        except Exception as exc:
            self.problems.append(f"committed dataset cannot be opened: {type(exc).__name__}: {exc}")
            return
        for cid in ds.case_ids:
            self.listed += 1
            problem = verify_case(ds.case(cid))
            if problem is not None:
                self.problems.append(f"{cid}: {problem}")


def _start(cohort: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        build_command(cohort, str(out)),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the build (its own process group); True when it was still running."""
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return alive


@pytest.fixture(scope="module")
def reference(small_build: str) -> Path:
    """The clean build of the same cohort: what every interrupted output must end up as."""
    return Path(small_build)


def _kill_at_random_moment(proc: subprocess.Popen, out: Path, rng: random.Random) -> str | None:
    """Wait until ``k`` cases are complete (k drawn from 0..3; with k = 0, until the first case
    directory appears; with all 3 complete the build is committing), then a random 0-400 ms more,
    then SIGKILL. Returns what was interrupted, or None when the build had already finished."""
    k = rng.randrange(4)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        done = len(list(out.glob("versions/*/complete/*.json")))
        started = any(out.glob("versions/*/images/*"))
        if (k == 0 and started) or (k > 0 and done >= k):
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.4))
    markers = len(list(out.glob("versions/*/complete/*.json")))
    committed = (out / "LATEST.json").exists()
    if not _kill(proc):
        return None
    return f"waited for {k} cases; killed with {markers} complete, committed={committed}"


def _crash_and_resume(seed: int, cohort: str, reference: Path, tmp_path: Path) -> None:
    rng = random.Random(seed)
    out = tmp_path / f"out-{seed}"
    reader = ReaderPoll(out).start()
    try:
        kills = []
        for _ in range(rng.choice((1, 2))):  # one or two crashes before the run that finishes
            what = _kill_at_random_moment(_start(cohort, out), out, rng)
            if what is not None:
                kills.append(what)
        final = subprocess.run(
            build_command(cohort, str(out)), env=child_env(), capture_output=True, timeout=600
        )
        assert final.returncode == 0, final.stderr.decode()[-2000:]
    finally:
        reader.stop()
    print(f"seed {seed}: {kills}; reader polls {reader.polls}, cases checked {reader.listed}")
    assert kills, "every kill landed after the build had finished; nothing was interrupted"
    assert reader.problems == [], reader.problems[:5]
    assert reader.polls > 10 and reader.listed > 0
    assert_same_output(reference, out)


@pytest.mark.slow
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_kill_9_mid_build_then_rerun(seed: int, small_cohort: str, reference, tmp_path: Path) -> None:
    _crash_and_resume(seed, small_cohort, reference, tmp_path)


@pytest.mark.soak
@pytest.mark.parametrize("seed", SOAK_SEEDS)
def test_kill_9_mid_build_then_rerun_soak(seed: int, small_cohort: str, reference, tmp_path: Path) -> None:
    _crash_and_resume(seed, small_cohort, reference, tmp_path)

"""Two builds into one OUTPUT: OUTPUT's lease makes the second wait or stop with one line."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from reliability_helpers import assert_same_output, build_command, child_env

from hcc_shards import lease as lease_mod
from hcc_shards.cli import main as cli_main
from hcc_shards.errors import OutputLockedError
from hcc_shards.format import LEASE_FILE
from hcc_shards.lease import Lease, LeaseRecord

EXIT_LOCKED = OutputLockedError.exit_code


@pytest.fixture(autouse=True)
def quick_lease(monkeypatch) -> None:
    monkeypatch.setattr(lease_mod, "SETTLE_S", 0.05)
    monkeypatch.setattr(lease_mod, "POLL_S", 0.05)


def _foreign(out: Path, *, expires_in: float, host: str = "elsewhere.example", pid: int = 1) -> None:
    """A lease of a build on another machine."""
    out.mkdir(parents=True, exist_ok=True)
    now = time.time()
    record = {
        "owner": "x" * 32,
        "host": host,
        "pid": pid,
        "acquired_at": now - 5,
        "expires_at": now + expires_in,
    }
    (out / LEASE_FILE).write_text(json.dumps(record))


def test_lease_taken_refused_and_released(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = Lease(out).acquire()
    assert (tmp_path / "out" / LEASE_FILE).exists()
    with pytest.raises(OutputLockedError, match="is being built by host") as err:
        Lease(out).acquire(wait_s=0.2)
    assert "\n" not in str(err.value) and "--lock-wait" in str(err.value)
    first.release()
    assert not (tmp_path / "out" / LEASE_FILE).exists()
    with Lease(out):  # free again
        pass


def test_waiting_build_gets_the_lease_when_the_first_ends(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = Lease(out).acquire()
    threading.Timer(0.5, first.release).start()
    t0 = time.monotonic()
    second = Lease(out).acquire(wait_s=30)
    assert 0.4 < time.monotonic() - t0 < 10
    assert second.read().owner == second.owner
    second.release()


def test_expired_or_dead_holders_free_the_lease(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _foreign(out, expires_in=-1)  # expired on another host
    Lease(str(out)).acquire().release()
    # Same host, process gone: free before expiry.
    proc = subprocess.Popen(["true"])
    proc.wait()
    _foreign(out, expires_in=600, host=socket.gethostname(), pid=proc.pid)
    Lease(str(out)).acquire().release()
    # Live on another host: refused.
    _foreign(out, expires_in=600)
    with pytest.raises(OutputLockedError, match=r"elsewhere\.example"):
        Lease(str(out)).acquire()


def test_renewal_extends_and_notices_a_takeover(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    held = Lease(out, ttl_s=60).acquire()
    before = held.read().expires_at
    time.sleep(0.05)
    assert held.renew() and held.read().expires_at > before
    _foreign(tmp_path / "out", expires_in=600)
    assert not held.renew() and held.lost
    held.release()  # not ours any more: left in place
    assert (tmp_path / "out" / LEASE_FILE).exists()


def test_torn_lease_file_is_no_lease(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LEASE_FILE).write_text('{"owner": "abc", "ho')
    assert LeaseRecord.from_json((out / LEASE_FILE).read_bytes()) is None
    Lease(str(out)).acquire().release()


@pytest.mark.slow
@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_lease_on_object_stores(store: str, request) -> None:
    """The same protocol on moto_server and gcp-storage-emulator: write, read back, refuse, release."""
    emulator = request.getfixturevalue(store)
    url = emulator.make_bucket("hcc-lease") + "/out"
    first = Lease(url, emulator.storage_options).acquire()
    with pytest.raises(OutputLockedError):
        Lease(url, emulator.storage_options).acquire(wait_s=0.2)
    first.release()
    assert first.read() is None
    Lease(url, emulator.storage_options).acquire().release()


def test_build_into_a_locked_output_stops_with_one_line(
    small_cohort: str, small_build: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    shutil.copytree(small_build, out)
    before = (out / "LATEST.json").read_bytes()
    _foreign(out, expires_in=600)
    assert cli_main(["build", small_cohort, str(out), "--spacing", "6,4,4", "--quiet"]) == EXIT_LOCKED
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("hcc-shards")]
    assert len(lines) == 1 and "is being built by host elsewhere.example" in lines[0]
    assert (out / "LATEST.json").read_bytes() == before
    assert json.loads((out / LEASE_FILE).read_text())["host"] == "elsewhere.example"


def _two_builds(cohort: str, out: Path, *flags: str) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            build_command(cohort, str(out), *flags),
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, "", err))
    return results


def _concurrent_trial(cohort: str, reference: str, out: Path, wait: bool) -> str:
    results = _two_builds(cohort, out, *(["--lock_wait=600"] if wait else []))
    codes = sorted(r.returncode for r in results)
    for r in results:
        assert r.returncode in (0, EXIT_LOCKED), r.stderr[-2000:]
        if r.returncode == EXIT_LOCKED:
            assert "is being built by host" in r.stderr and "Traceback" not in r.stderr
    assert codes[0] == 0, [r.stderr[-500:] for r in results]
    if wait:
        assert codes == [0, 0]
    assert not (out / LEASE_FILE).exists()
    assert_same_output(reference, out)
    return "both built" if codes == [0, 0] else "second stopped"


@pytest.mark.slow
@pytest.mark.parametrize("wait", [False, True], ids=["stop", "wait"])
def test_two_concurrent_builds(wait: bool, small_cohort: str, small_build: str, tmp_path: Path) -> None:
    _concurrent_trial(small_cohort, small_build, tmp_path / "out", wait)


@pytest.mark.soak
def test_two_concurrent_builds_soak(small_cohort: str, small_build: str, tmp_path: Path) -> None:
    """Twenty trials: every result equals a single build, or one of the two stopped with its line."""
    seen = [
        _concurrent_trial(small_cohort, small_build, tmp_path / f"out-{i}", wait=i % 2 == 1)
        for i in range(20)
    ]
    print({k: seen.count(k) for k in set(seen)})
    assert len(seen) == 20

"""Object-storage emulators for tests: gcp-storage-emulator (GCS) and moto_server (S3) on 127.0.0.1.

Each emulator is a child process on a free port, in its own process group so that teardown can
stop it and anything it spawned without touching other processes. Tests reach it through fsspec
with the ``storage_options`` the emulator reports, exactly as a user would reach a real bucket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# gcsfs probes hierarchical-namespace support (and stalls against emulators) unless told not to.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

_STARTUP_TIMEOUT_S = 30.0
# Not us-east-1: s3fs sends the region as LocationConstraint on bucket creation, which S3 rejects there.
_S3_REGION = "us-west-2"


@dataclass(frozen=True)
class Emulator:
    """A running storage emulator and how to reach it."""

    protocol: str
    """fsspec protocol it serves: 'gs' or 's3'."""
    endpoint: str
    """Base URL, e.g. http://127.0.0.1:40123."""
    storage_options: dict[str, Any] = field(hash=False)
    """fsspec storage options that reach the emulator without credentials."""
    env: dict[str, str] = field(hash=False)
    """Environment variables that point standard clients (and subprocesses) at the emulator."""

    def url(self, bucket: str, *parts: str) -> str:
        """``<protocol>://bucket/part/...``."""
        return "/".join([f"{self.protocol}://{bucket}", *(p.strip("/") for p in parts if p)])

    def make_bucket(self, bucket: str) -> str:
        """Create ``bucket`` (idempotent) and return its URL."""
        import fsspec

        fs = fsspec.filesystem(self.protocol, **self.storage_options)
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        fs.invalidate_cache()
        return f"{self.protocol}://{bucket}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _executable(name: str) -> str:
    """The console script ``name`` of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} not found next to {sys.executable} or on PATH; install the dev extra"
        )
    return found


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"emulator exited with code {proc.returncode} before serving {url}; log:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise TimeoutError(
        f"emulator did not answer {url} within {_STARTUP_TIMEOUT_S} s; log:\n{log.read_text()}"
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    # The emulator runs in its own session, so its process group holds only it and its children.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def _serve(cmd: list[str], ready_url: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        _wait_ready(proc, ready_url, log)
        yield
    finally:
        _stop(proc)


@contextlib.contextmanager
def gcs_emulator(workdir: Path) -> Iterator[Emulator]:
    """gcp-storage-emulator, in memory, on a free port."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [_executable("gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--in-memory", "--quiet"]
    with _serve(cmd, f"{endpoint}/storage/v1/b", workdir / f"gcs-emulator-{port}.log"):
        yield Emulator(
            protocol="gs",
            endpoint=endpoint,
            storage_options={"token": "anon", "endpoint_url": endpoint, "project": "hcc-shards-test"},
            env={"STORAGE_EMULATOR_HOST": endpoint},
        )


@contextlib.contextmanager
def s3_emulator(workdir: Path) -> Iterator[Emulator]:
    """moto_server on a free port (S3 API, any credentials accepted)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    cmd = [_executable("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _serve(cmd, f"{endpoint}/", workdir / f"moto-{port}.log"):
        yield Emulator(
            protocol="s3",
            endpoint=endpoint,
            storage_options={
                "key": "testing",
                "secret": "testing",
                "endpoint_url": endpoint,
                "client_kwargs": {"region_name": _S3_REGION},
            },
            env={
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": _S3_REGION,
            },
        )

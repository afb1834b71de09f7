"""Shared fixtures: object-storage emulators started once per test session on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from emulators import Emulator, gcs_emulator, s3_emulator


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A gcp-storage-emulator for the whole session; stopped at the end even when tests fail."""
    with gcs_emulator(tmp_path_factory.mktemp("gcs-emulator")) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A moto_server (S3) for the whole session; stopped at the end even when tests fail."""
    with s3_emulator(tmp_path_factory.mktemp("s3-emulator")) as emulator:
        yield emulator

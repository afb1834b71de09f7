"""Fixtures of the IDC tests: which copy of the IDC index they read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from idc_helpers import HAS_IDC_INDEX, csv_index


@pytest.fixture(scope="session")
def index_path() -> str | None:
    """None (the installed idc-index-data) or the CSV with the same rows for hcc_tace_seg."""
    if HAS_IDC_INDEX:
        return None
    path = csv_index()
    if path is None:
        pytest.skip("neither idc-index-data nor the CSV export of its hcc_tace_seg rows is available")
    return path

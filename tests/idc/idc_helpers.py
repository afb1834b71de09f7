"""The IDC index for tests: idc-index-data when installed, else the CSV export of it in shared/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_CSV_CANDIDATES = (
    REPO.parent / "shared" / "data" / "idc" / "hcc_tace_seg_series.csv",
    REPO / "shared" / "data" / "idc" / "hcc_tace_seg_series.csv",
    Path("/work/shared/data/idc/hcc_tace_seg_series.csv"),
)
HAS_IDC_INDEX = importlib.util.find_spec("idc_index_data") is not None
needs_idc_index = pytest.mark.skipif(not HAS_IDC_INDEX, reason="idc-index-data (the idc extra) not installed")


def csv_index() -> str | None:
    """The CSV export of the index's hcc_tace_seg rows, where a checkout has shared/ beside it."""
    return next((str(p) for p in _CSV_CANDIDATES if p.exists()), None)

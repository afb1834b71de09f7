"""Fixtures of the DICOM core tests: the real public test corpus (tests/data) and small builders."""

from __future__ import annotations

import pytest
from dicom_corpus import DATA, PUBLIC_CODES

from hcc_shards.config import DEFAULT_SEGMENT_CODES, BuildConfig
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file


@pytest.fixture(scope="session")
def public_config() -> BuildConfig:
    return BuildConfig(segment_codes=DEFAULT_SEGMENT_CODES + PUBLIC_CODES)


@pytest.fixture(scope="session")
def corpus_headers() -> dict[str, InstanceHeader]:
    """Header of every DICOM file under tests/data, by path relative to it."""
    out = {}
    for path in sorted(DATA.rglob("*")):
        if path.is_file():
            h = index_file(str(path))
            if isinstance(h, InstanceHeader):
                out[str(path.relative_to(DATA))] = h
    return out

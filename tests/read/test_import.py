"""Importing the reader loads none of the build stack (checked in a fresh interpreter)."""

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("apache_beam", "pydicom", "highdicom", "scipy", "SimpleITK", "zarr", "torch", "matplotlib")
_PROBE = (
    "import json, sys; import hcc_shards.read; "
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden})))"
)


def _loaded_by_import() -> list[str]:
    code = _PROBE.format(forbidden=repr(set(FORBIDDEN)))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


def test_reader_import_is_thin():
    # In the main environment every forbidden package is installed, so this is the meaningful check.
    assert _loaded_by_import() == []


@pytest.mark.reader_env
def test_reader_imports_in_the_thin_environment():
    assert _loaded_by_import() == []


@pytest.mark.reader_env
def test_torch_adapter_imports_torch_only_on_demand():
    code = "import sys; import hcc_shards.read.torch; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "True"

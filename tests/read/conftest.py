import sys
from pathlib import Path

import pytest

# The minimal format writer lives next to the tests that use it.
sys.path.insert(0, str(Path(__file__).parent))

from miniwriter import MiniCase, MiniLayout, phantom, write_dataset

SHAPES = {"A": (20, 48, 40), "B": (13, 40, 37), "C": (6, 20, 18)}
SPLITS = {"A": "train", "B": "train", "C": "val"}


@pytest.fixture(scope="session")
def mini_cases() -> list[MiniCase]:
    """Three small phantom cases; C is smaller than the test patches along every axis."""
    out = []
    for i, (cid, shape) in enumerate(SHAPES.items()):
        image, label = phantom(shape, seed=i)
        out.append(
            MiniCase(cid, image, label, spacing=(2.0, 1.0, 0.5 + i), origin=(i, 2.0, -3.0), split=SPLITS[cid])
        )
    return out


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory, mini_cases) -> str:
    """A committed zstd dataset (chunks 8x16x16 in shards 16x32x32) written by the minimal writer."""
    root = str(tmp_path_factory.mktemp("mini"))
    write_dataset(root, mini_cases, MiniLayout())
    return root


@pytest.fixture(scope="session")
def mini_blosc_root(tmp_path_factory, mini_cases) -> str:
    """The same cases with blosc (lz4, shuffle) chunks of another shape."""
    root = str(tmp_path_factory.mktemp("mini_blosc"))
    write_dataset(
        root,
        mini_cases,
        MiniLayout(chunk=(4, 8, 8), shard=(8, 32, 16), compressor="blosc", version="blosc0000001"),
    )
    return root

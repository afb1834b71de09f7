"""The thin reader: open a hcc-shards dataset and stream training patches from it.

Imports only numpy, fsspec, pyarrow, zstandard, crc32c (numcodecs for blosc datasets) and
:mod:`hcc_shards.geometry`; never apache_beam, pydicom, highdicom, scipy, SimpleITK, zarr or torch.
The PyTorch adapter lives in :mod:`hcc_shards.read.torch` and is imported on demand. See
docs/READER.md.
"""

from hcc_shards.errors import CorruptChunkError, FormatError
from hcc_shards.read.array import LazyArray, RegionRequest, read_regions
from hcc_shards.read.cache import CacheSettings
from hcc_shards.read.dataset import IMAGE_PAD, LABEL_PAD, Case, Dataset, DatasetInfo, open_dataset
from hcc_shards.read.io import IOSettings
from hcc_shards.read.order import STATE_VERSION, ReaderState, assign_positions, per_rank_count
from hcc_shards.read.sampling import (
    PatchSpec,
    RandomPatches,
    Sampler,
    SlidingWindows,
    WholeVolumes,
    sliding_window_starts,
)
from hcc_shards.read.stream import Patch, PatchStream, single_worker, stack

__all__ = [
    "IMAGE_PAD",
    "LABEL_PAD",
    "STATE_VERSION",
    "CacheSettings",
    "Case",
    "CorruptChunkError",
    "Dataset",
    "DatasetInfo",
    "FormatError",
    "IOSettings",
    "LazyArray",
    "Patch",
    "PatchSpec",
    "PatchStream",
    "RandomPatches",
    "ReaderState",
    "RegionRequest",
    "Sampler",
    "SlidingWindows",
    "WholeVolumes",
    "assign_positions",
    "open_dataset",
    "per_rank_count",
    "read_regions",
    "single_worker",
    "sliding_window_starts",
    "stack",
]

"""Shard format v1 (docs/FORMAT.md): target spacing, per-case OME-Zarr writer, manifest, commit, card.

Build-side only (zarr, scipy-free numpy, pyarrow, matplotlib); never imported by hcc_shards.read.
"""

from hcc_shards.shards.commit import commit_dataset, read_latest, version_url
from hcc_shards.shards.fingerprint import auto_target_spacing
from hcc_shards.shards.foreground import ClassForeground, class_foreground
from hcc_shards.shards.manifest import (
    MANIFEST_COLUMNS,
    ManifestRow,
    read_manifest,
    split_for_patient,
)
from hcc_shards.shards.writer import read_complete_case, write_case

__all__ = [
    "MANIFEST_COLUMNS",
    "ClassForeground",
    "ManifestRow",
    "auto_target_spacing",
    "class_foreground",
    "commit_dataset",
    "read_complete_case",
    "read_latest",
    "read_manifest",
    "split_for_patient",
    "version_url",
    "write_case",
]

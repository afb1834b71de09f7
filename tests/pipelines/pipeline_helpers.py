"""Helpers of the pipeline tests: cohort description, in-process builds, output inspection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from hcc_shards.synth import CohortTruth

IN_PROCESS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
"""Flags that run a DirectRunner build inside the test process."""


@dataclass(frozen=True)
class Cohort:
    """A synthetic input tree and what a correct build must make of it."""

    root: str
    """Local folder of the DICOM tree."""
    truth: CohortTruth
    """Generator truth per patient."""
    extra: dict[str, str] = field(default_factory=dict)
    """Path relative to ``root`` -> quarantine code, for the bad files added next to the cohort."""


def build(input_url: str, output_url: str, *flags: str) -> Any:
    """Run a build in this process and return its Summary."""
    from pipelines.build import run_build

    return run_build([f"--input={input_url}", f"--output={output_url}", *flags], progress=False)


def version_dir(output: str | Path) -> Path:
    """The only version folder of a local build output."""
    versions = sorted((Path(output) / "versions").iterdir())
    if len(versions) != 1:
        raise AssertionError(f"expected one version under {output}, found {[v.name for v in versions]}")
    return versions[0]


def read_table(path: str | Path) -> list[dict[str, Any]]:
    return pq.read_table(str(path)).to_pylist()


def snapshot(root: str | Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file under a local output."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def case_arrays(
    version: str | Path, row: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Image, label and foreground arrays of one stored case (its manifest ``row``) under a version
    (zarr-python, any fsspec URL): the image group at ``image_path``, the label image at ``path``."""
    import zarr

    from hcc_shards import storage
    from hcc_shards.shards.writer import open_store

    def group(rel: str):
        return zarr.open_group(
            open_store(storage.join(str(version), rel), storage_options, read_only=True), mode="r"
        )

    image, label = group(row["image_path"]), group(row["path"])
    arrays = {"image": image["0"][...], "label": label["0"][...]}
    for name in sorted(label["foreground"].array_keys()):
        arrays[f"foreground/{name}"] = label["foreground"][name][...]
    return arrays


def without(rows: Sequence[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in keys} for r in rows]

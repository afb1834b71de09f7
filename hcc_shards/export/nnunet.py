"""nnU-Net v2 raw layout: ``DatasetNNN_Name/{imagesTr,labelsTr}`` and ``dataset.json``.

Order of operations: every case's image (``<case_id>_0000.nii.gz``, channel 0 = CT) and label
(``<case_id>.nii.gz``), each written whole, then ``dataset.json`` last: nnU-Net finds the
dataset through it, so an interrupted export has none and is not taken for a finished one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from hcc_shards import storage
from hcc_shards.export.nifti import NIFTI_ENDING, nifti_bytes
from hcc_shards.read import Dataset
from hcc_shards.shards.atomic import put_bytes_atomic, put_json_atomic

CHANNELS = {"0": "CT"}
"""nnU-Net channel names; "CT" selects its CT normalisation (dataset-wide HU percentiles)."""


def dataset_folder(dataset_id: int, name: str) -> str:
    """``DatasetNNN_Name``: nnU-Net's folder name (three-digit id, name of letters, digits, _ and -)."""
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "hcc"
    return f"Dataset{int(dataset_id):03d}_{safe}"


def nnunet_dataset_json(dataset: Dataset, num_training: int) -> dict[str, Any]:
    """nnU-Net v2 ``dataset.json``: channel_names, labels (background 0, then by name), numTraining, file_ending."""
    labels = {"background": 0}
    labels.update({name: int(value) for value, name in sorted(dataset.info.labels)})
    return {
        "channel_names": dict(CHANNELS),
        "labels": labels,
        "numTraining": int(num_training),
        "file_ending": NIFTI_ENDING,
        "name": dataset.info.name or "hcc-shards",
        "description": f"hcc-shards dataset version {dataset.version}, exported to nnU-Net raw",
        "hcc_shards_version": dataset.version,
    }


def export_nnunet(
    dataset: Dataset,
    dest: str,
    dataset_id: int,
    *,
    name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Write ``dataset`` as nnU-Net raw data under ``DEST/DatasetNNN_Name``; returns that folder's URL."""
    if len(dataset) == 0:
        raise ValueError("no case to export (check the filter)")
    root = storage.join(dest, dataset_folder(dataset_id, name or dataset.info.name or "hcc"))
    for case in dataset:
        geometry = case.geometry
        image = storage.join(root, "imagesTr", f"{case.case_id}_0000{NIFTI_ENDING}")
        label = storage.join(root, "labelsTr", f"{case.case_id}{NIFTI_ENDING}")
        put_bytes_atomic(image, nifti_bytes(np.asarray(case.image), geometry), storage_options)
        put_bytes_atomic(label, nifti_bytes(np.asarray(case.label), geometry), storage_options)
        if progress is not None:
            progress(case.case_id)
    put_json_atomic(
        storage.join(root, "dataset.json"), nnunet_dataset_json(dataset, len(dataset)), storage_options
    )
    return root

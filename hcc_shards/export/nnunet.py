"""nnU-Net v2 raw layout: ``DatasetNNN_Name/{imagesTr,labelsTr}`` and ``dataset.json``.

Order of operations: every case's image (``<case_id>_0000.nii.gz``, channel 0 = CT) and label
(``<case_id>.nii.gz``), each written whole, then ``dataset.json`` last: nnU-Net finds the
dataset through it, so an interrupted export has none and is not taken for a finished one.

With ``phases`` (a dataset built with ``--phases all``, docs/PHASES.md), channel ``k`` is the case's
channel of phase ``phases[k]`` (``<case_id>_0000``, ``_0001``, ...), every one on the label's grid;
a case without one of them is left out (nnU-Net needs every channel of every case) and listed in
``dataset.json`` under ``hcc_shards_skipped``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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


def nnunet_dataset_json(
    dataset: Dataset, num_training: int, phases: Sequence[str] | None = None
) -> dict[str, Any]:
    """nnU-Net v2 ``dataset.json``: channel_names, labels (background 0, then by name), numTraining, file_ending.

    With ``phases`` every channel is named "CT" (nnU-Net picks its normalisation by that name) and
    ``hcc_shards_channels`` gives the phase of each."""
    labels = {"background": 0}
    labels.update({name: int(value) for value, name in sorted(dataset.info.labels)})
    extra: dict[str, Any] = {}
    channels = dict(CHANNELS)
    if phases is not None:
        channels = {str(k): CHANNELS["0"] for k in range(len(phases))}
        extra["hcc_shards_channels"] = {str(k): p for k, p in enumerate(phases)}
    return {
        "channel_names": channels,
        "labels": labels,
        "numTraining": int(num_training),
        "file_ending": NIFTI_ENDING,
        "name": dataset.info.name or "hcc-shards",
        "description": f"hcc-shards dataset version {dataset.version}, exported to nnU-Net raw",
        "hcc_shards_version": dataset.version,
        **extra,
    }


def export_nnunet(
    dataset: Dataset,
    dest: str,
    dataset_id: int,
    *,
    name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    phases: Sequence[str] | None = None,
) -> str:
    """Write ``dataset`` as nnU-Net raw data under ``DEST/DatasetNNN_Name``; returns that folder's URL.

    ``phases``: one channel per phase name, in that order (module docstring); None: the annotated CT
    as the only channel."""
    if len(dataset) == 0:
        raise ValueError("no case to export (check the filter)")
    if phases is not None and (not phases or len(set(phases)) != len(phases)):
        raise ValueError(f"phases must be distinct phase names, at least one, got {list(phases)}")
    root = storage.join(dest, dataset_folder(dataset_id, name or dataset.info.name or "hcc"))
    written = 0
    skipped: list[str] = []
    for case in dataset:
        geometry = case.geometry
        channels: list[int | None] = [0] if phases is None else [case.channel_for(p) for p in phases]
        if any(c is None for c in channels):
            skipped.append(case.case_id)
            continue
        for k, c in enumerate(channels):
            image = storage.join(root, "imagesTr", f"{case.case_id}_{k:04d}{NIFTI_ENDING}")
            put_bytes_atomic(image, nifti_bytes(np.asarray(case.channel(int(c))), geometry), storage_options)
        label = storage.join(root, "labelsTr", f"{case.case_id}{NIFTI_ENDING}")
        put_bytes_atomic(label, nifti_bytes(np.asarray(case.label), geometry), storage_options)
        written += 1
        if progress is not None:
            progress(case.case_id)
    if written == 0:
        raise ValueError(f"no case has every phase of {list(phases or ())} (docs/PHASES.md)")
    doc = nnunet_dataset_json(dataset, written, phases)
    if skipped:
        doc["hcc_shards_skipped"] = skipped
    put_json_atomic(storage.join(root, "dataset.json"), doc, storage_options)
    return root

"""Radiomics features per case and label with pyradiomics-bhklab (choice and measurements: docs/FEATURES.md).

Computed in the per-case build step on the stored (resampled) image and label already in memory,
so the engines parallelise the work across cases. Order of operations of :func:`case_features`:
1. wrap the int16 image and the uint8 label as SimpleITK images with the stored spacing (x, y, z);
2. for each label of :data:`FEATURE_LABELS` present in the case, run the extractor of
   :func:`extractor` (shape, first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM on the original image);
3. keep the ``original_*`` values as float64; a label the library refuses gives a row with ``error``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from hcc_shards.labels import LIVER, TUMOR

__all__ = [
    "FEATURE_CLASSES",
    "FEATURE_LABELS",
    "SETTINGS",
    "FeatureRow",
    "case_features",
    "extractor",
    "features_table",
]

FEATURE_LABELS: tuple[tuple[int, str], ...] = ((LIVER, "liver"), (TUMOR, "tumor"))
"""(label value, name) of the labels features are computed for."""
FEATURE_CLASSES: tuple[str, ...] = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
BIN_WIDTH = 25.0
"""Fixed bin width of the grey-level discretisation, HU."""
SETTINGS: tuple[tuple[str, Any], ...] = (
    ("library", "pyradiomics-bhklab"),
    ("bin_width_hu", BIN_WIDTH),
    ("resampling", "none by the library: the stored grid (dataset target spacing)"),
    ("grid", "stored"),
    ("image_types", "original"),
    ("classes", ",".join(FEATURE_CLASSES)),
    ("labels", ",".join(n for _, n in FEATURE_LABELS)),
)
"""Extraction settings, recorded in dataset.json and DATASET.md."""
_KEYS = ("case_id", "patient_id", "label", "channel", "phase", "error")


@dataclass(frozen=True)
class FeatureRow:
    """Features of one label of one case."""

    case_id: str
    patient_id: str
    label: str
    """Label name (``liver``, ``tumor``)."""
    values: tuple[tuple[str, float], ...]
    """(pyradiomics feature name ``original_<class>_<name>``, value)."""
    error: str = ""
    """Why the library gave no features for this label ('' when it did)."""
    channel: int = 0
    """Image channel the features are of: 0 the annotated image, n the phase channel ``phases/<n>``."""
    phase: str = ""
    """Phase of that channel (docs/PHASES.md); '' in a build without ``--phases all``."""


def extractor(bin_width: float = BIN_WIDTH):
    """The pyradiomics extractor of :data:`SETTINGS` (the one the tests run directly too).

    ``bin_width`` other than :data:`BIN_WIDTH` is for the IBSI phantom test (bin width 1 keeps its grey levels).
    """
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    ext = featureextractor.RadiomicsFeatureExtractor(binWidth=bin_width)
    ext.disableAllImageTypes()
    ext.enableImageTypeByName("Original")
    ext.disableAllFeatures()
    for c in FEATURE_CLASSES:
        ext.enableFeatureClassByName(c)
    return ext


def sitk_pair(image: np.ndarray, label: np.ndarray, spacing_zyx: Sequence[float]):
    """SimpleITK image and mask of (z, y, x) arrays; spacing given as SimpleITK's (x, y, z)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(image))
    msk = sitk.GetImageFromArray(np.ascontiguousarray(label))
    spacing = tuple(float(v) for v in reversed(list(spacing_zyx)))
    img.SetSpacing(spacing)
    msk.SetSpacing(spacing)
    return img, msk


def case_features(
    case_id: str,
    patient_id: str,
    image: np.ndarray,
    label: np.ndarray,
    spacing_zyx: Sequence[float],
    *,
    channel: int = 0,
    phase: str = "",
) -> tuple[FeatureRow, ...]:
    """Steps 1-3 of the module docstring, for the image of ``channel`` (in ``phase``)."""
    img, msk = sitk_pair(image, label, spacing_zyx)
    ext = extractor()
    rows = []
    for value, name in FEATURE_LABELS:
        if not np.any(label == value):
            continue
        try:
            out = ext.execute(img, msk, label=value)
        except (ValueError, RuntimeError) as e:  # pyradiomics refuses e.g. a one-voxel mask
            error = f"{type(e).__name__}: {e}"
            rows.append(FeatureRow(case_id, patient_id, name, (), error, channel, phase))
            continue
        values = tuple((k, float(np.asarray(v))) for k, v in out.items() if k.startswith("original_"))
        rows.append(FeatureRow(case_id, patient_id, name, values, "", channel, phase))
    return tuple(rows)


def features_table(rows: Sequence[FeatureRow]) -> pa.Table:
    """features.parquet: case_id, patient_id, label, channel, phase, error, then one float64 column
    per feature; one row per case, label and channel."""
    ordered = sorted(rows, key=lambda r: (r.case_id, r.label, r.channel))
    names = sorted({k for r in ordered for k, _ in r.values})
    cols: dict[str, list[Any]] = {k: [] for k in (*_KEYS, *names)}
    for r in ordered:
        vals = dict(r.values)
        keys = (r.case_id, r.patient_id, r.label, r.channel, r.phase, r.error)
        for k, v in zip(_KEYS, keys, strict=True):
            cols[k].append(v)
        for n in names:
            cols[n].append(vals.get(n))
    key_types = [pa.int64() if k == "channel" else pa.string() for k in _KEYS]
    schema = pa.schema([*zip(_KEYS, key_types, strict=True), *((n, pa.float64()) for n in names)])
    return pa.table(cols, schema=schema)


def rows_of_table(table: pa.Table) -> tuple[FeatureRow, ...]:
    """Inverse of :func:`features_table` (a resumed case's stored rows)."""
    out = []
    for d in table.to_pylist():
        values = tuple((k, float(v)) for k, v in d.items() if k not in _KEYS and v is not None)
        out.append(
            FeatureRow(
                d["case_id"],
                d["patient_id"],
                d["label"],
                values,
                d["error"] or "",
                int(d.get("channel") or 0),
                str(d.get("phase") or ""),
            )
        )
    return tuple(out)

"""Write a model's predictions back into a committed dataset version, as label images of its cases.

Order of operations of :func:`write_predictions` (docs/FORMAT.md, "Predictions"): 1. open the version
as the reader does (without its prediction sets) and refuse a set name already taken; 2. check every
prediction (a case of the manifest, the stored grid's shape, only values of the labels the model
predicts) and refuse the whole set, naming each bad case, before anything is written; 3. per case: a
label image ``images/<image_id>/labels/<prediction case id>`` with the writer's geometry, chunking,
codecs, colours and attributes (``annotation.source`` ``prediction``), then its id added to the
image's OME ``labels`` list; 4. the set's marker ``complete/predictions/<name>.json`` with every row;
5. the rows as ``predictions/<name>.parquet`` in one put: the set becomes visible to readers only
then. The build never writes under ``predictions/`` or ``complete/predictions/``, so rebuilding the
version (a resume) keeps every set.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import zarr
from zarr.storage import MemoryStore

from hcc_shards import storage
from hcc_shards.annotation import SOURCE_PREDICTION
from hcc_shards.case import CASE_ID_HASH_CHARS
from hcc_shards.config import FORMAT_VERSION, BuildConfig
from hcc_shards.errors import PredictionError
from hcc_shards.format import LABELS_GROUP, ZARR_JSON, label_path
from hcc_shards.geometry import Geometry
from hcc_shards.labels import LABELS
from hcc_shards.prediction_names import check_prediction_name, prediction_marker_path, prediction_table_path
from hcc_shards.qc_rules import qc_flags
from hcc_shards.shards.atomic import exists, put_json_atomic, read_json
from hcc_shards.shards.foreground import ClassForeground, class_foreground
from hcc_shards.shards.manifest import MANIFEST_COLUMNS, ManifestRow, rows_to_table, write_parquet
from hcc_shards.shards.writer import (
    content_checksum,
    dice,
    hu_stats,
    write_foreground,
    write_label_array,
)

__all__ = [
    "PREDICTION_ENDINGS",
    "PredictionSet",
    "check_predictions",
    "prediction_case_id",
    "read_prediction_files",
    "write_predictions",
]

PREDICTION_ENDINGS = (".npy", ".nii.gz", ".nii")
"""Files :func:`read_prediction_files` reads: ``<case_id>.npy`` (a (z, y, x) array) or NIfTI in the
geometry convention of ``hcc-shards export nifti``."""
SOURCE_REASON = "written back by hcc-shards predictions"
SEGMENT_ALGORITHM_TYPE = "AUTOMATIC"


@dataclass(frozen=True)
class PredictionSet:
    """What :func:`write_predictions` wrote."""

    name: str
    """The set's name (``predictions/<name>.parquet``)."""
    model: str
    """Model name and version, as given."""
    version_url: str
    """The dataset version the set belongs to."""
    rows: tuple[ManifestRow, ...]
    """One row per prediction, sorted by case id (the table's rows)."""


def prediction_case_id(name: str, reference_case_id: str) -> str:
    """Case id of the prediction of set ``name`` for ``reference_case_id``: the reference's PatientID
    prefix and 16 hex digits of ``sha256("hcc-shards-prediction\\0<name>\\0<reference case id>")``."""
    prefix = reference_case_id.rsplit("_", 1)[0] or "unknown"
    identity = f"hcc-shards-prediction\0{check_prediction_name(name)}\0{reference_case_id}"
    return f"{prefix}_{hashlib.sha256(identity.encode()).hexdigest()[:CASE_ID_HASH_CHARS]}"


def check_predictions(
    dataset: Any, predictions: Mapping[str, Any], annotated_labels: Sequence[str]
) -> dict[str, np.ndarray]:
    """case id -> uint8 label array for every prediction that fits its case, or PredictionError naming
    every one that does not (not in the manifest, not the stored shape, a value outside the labels)."""
    names = {lab.name: lab.value for lab in LABELS}
    allowed = {0, *(names[n] for n in annotated_labels)}
    problems: list[str] = []
    out: dict[str, np.ndarray] = {}
    known = set(dataset.case_ids)
    for case_id in sorted(predictions):
        if case_id not in known:
            problems.append(f"case {case_id!r}: not in the manifest of version {dataset.version}")
            continue
        array = np.asarray(predictions[case_id])
        shape = dataset.case(case_id).shape
        if array.shape != shape:
            problems.append(f"case {case_id!r}: shape {array.shape}, expected the stored grid's {shape}")
            continue
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            problems.append(f"case {case_id!r}: dtype {array.dtype}, expected integer label values")
            continue
        values = {int(v) for v in np.unique(array)}
        if values - allowed:
            problems.append(
                f"case {case_id!r}: values {sorted(values - allowed)} outside the predicted labels' "
                f"{sorted(allowed)} ({', '.join(annotated_labels)} and background 0)"
            )
            continue
        out[case_id] = np.ascontiguousarray(array, dtype=np.uint8)
    if problems:
        raise PredictionError(f"{len(problems)} predictions refused, nothing written: " + "; ".join(problems))
    return out


def read_prediction_files(
    folder: str, dataset: Any, storage_options: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """case id -> array of every ``<case_id>.npy`` / ``.nii.gz`` / ``.nii`` in ``folder`` (fsspec URL).

    A NIfTI file must be on its case's stored grid (:func:`hcc_shards.export.nifti.array_from_nifti`);
    other files are ignored. PredictionError names every file that cannot be used."""
    import io

    from hcc_shards.export.nifti import array_from_nifti

    fs, root = storage.filesystem(folder, storage_options)
    try:
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    except FileNotFoundError:
        raise PredictionError(f"{folder}: no such folder of predictions") from None
    known = set(dataset.case_ids)
    out: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for file_name in names:
        ending = next((e for e in PREDICTION_ENDINGS if file_name.endswith(e)), None)
        if ending is None or file_name.startswith("."):
            continue
        case_id = file_name[: -len(ending)]
        if case_id in out:
            problems.append(f"case {case_id!r}: two files ({file_name} and another)")
            continue
        blob = fs.cat_file(f"{root.rstrip('/')}/{file_name}")
        try:
            if ending == ".npy":
                out[case_id] = np.load(io.BytesIO(blob), allow_pickle=False)
            elif case_id not in known:
                problems.append(f"case {case_id!r}: not in the manifest of version {dataset.version}")
            else:
                out[case_id] = array_from_nifti(blob, dataset.case(case_id).geometry, name=file_name)
        except (ValueError, RuntimeError, OSError) as exc:
            problems.append(f"case {case_id!r}: {exc}")
    if problems:
        raise PredictionError(
            f"{len(problems)} prediction files refused, nothing written: " + "; ".join(problems)
        )
    if not out:
        raise PredictionError(f"{folder}: no <case_id>{'/'.join(PREDICTION_ENDINGS)} file")
    return out


def write_predictions(
    dataset_url: str,
    predictions: Mapping[str, Any],
    *,
    name: str,
    model: str,
    annotated_labels: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    version: str | None = None,
    replace_set: bool = False,
) -> PredictionSet:
    """Write ``predictions`` (case id -> (z, y, x) label array on the case's stored grid) as set ``name``.

    ``annotated_labels`` are the labels the model predicts (default: every label); a label it does
    not predict is unknown in its label images, as for a SEG that does not define it. ``replace_set``
    writes over a set of the same name (its table is removed first, so readers never mix the two).
    """
    from hcc_shards.read import open_dataset

    check_prediction_name(name)
    if not predictions:
        raise PredictionError(f"prediction set {name!r}: no prediction given")
    labels = _annotated(annotated_labels)
    ds = open_dataset(dataset_url, storage_options, version, predictions=False)
    vurl = ds.store.root_url
    table_url = storage.join(vurl, prediction_table_path(name))
    if exists(table_url, storage_options) and not replace_set:
        raise PredictionError(
            f"prediction set {name!r} already exists in version {ds.version} ({table_url}); "
            "choose another name or replace it"
        )
    arrays = check_predictions(ds, predictions, labels)
    if exists(table_url, storage_options):  # replace: the old set disappears before any byte changes
        fs, path = storage.filesystem(table_url, storage_options)
        fs.rm_file(path)
    config = BuildConfig.from_dict(ds.info.raw.get("config") or {})
    meta = {"name": name, "model": model, "config_hash": ds.version}
    rows = [
        _write_one(ds, vurl, case_id, arrays[case_id], labels, config, meta, storage_options)
        for case_id in sorted(arrays)
    ]
    created = datetime.now(UTC).isoformat(timespec="seconds")
    marker = {
        "format_version": FORMAT_VERSION,
        **meta,
        "annotated_labels": list(labels),
        "created": created,
        "cases": [{"case_id": r.case_id, "checksum": r.checksum, "row": r.to_dict()} for r in rows],
    }
    put_json_atomic(storage.join(vurl, prediction_marker_path(name)), marker, storage_options)
    table = rows_to_table(rows)
    info = {**meta, "format_version": FORMAT_VERSION, "created": created}
    table = table.replace_schema_metadata({"hcc_shards.prediction": json.dumps(info, sort_keys=True)})
    write_parquet(table, table_url, storage_options)
    return PredictionSet(name, model, vurl, tuple(sorted(rows, key=lambda r: r.case_id)))


def _annotated(given: Sequence[str] | None) -> tuple[str, ...]:
    names = [lab.name for lab in LABELS]
    if given is None:
        return tuple(names)
    unknown = sorted(set(given) - set(names))
    if unknown or not given:
        raise PredictionError(f"predicted labels must be among {names}, got {list(given)}")
    return tuple(n for n in names if n in set(given))


def _write_one(
    ds: Any,
    vurl: str,
    reference_id: str,
    label: np.ndarray,
    annotated: tuple[str, ...],
    config: BuildConfig,
    meta: dict[str, str],
    storage_options: dict[str, Any] | None,
) -> ManifestRow:
    """Write the label image of one prediction and return its row."""
    ref = ds.case(reference_id)
    case_id = prediction_case_id(meta["name"], reference_id)
    image_group = _document(ds, f"{ref.image_path}/{ZARR_JSON}")
    ref_group = _document(ds, f"{ref.path}/{ZARR_JSON}")
    image_attrs = image_group["attributes"]["hcc_shards"]
    ref_attrs = ref_group["attributes"]["hcc_shards"]
    image = np.asarray(ref.image)
    fg_all = class_foreground(
        label,
        case_id=case_id,
        seed=config.seed,
        min_samples=config.class_locations_samples,
        fraction=config.class_locations_fraction,
    )
    fg = {n: cf for n, cf in fg_all.items() if n in annotated}
    attrs = _attributes(case_id, ref, ref_attrs, annotated, fg, meta)
    checksum = content_checksum(image, label, fg, {**image_attrs, **attrs})
    row = _row(ref, case_id, image, label, fg, annotated, image_attrs, meta, checksum)
    attrs["qc_flags"] = list(row.qc_flags)

    ome = copy.deepcopy(ref_group["attributes"]["ome"])
    for scale in ome.get("multiscales", []):
        scale["name"] = case_id
    url = storage.join(vurl, row.path)
    fs, path = storage.filesystem(url, storage_options)
    if fs.exists(path):  # left by an interrupted or replaced write of this set
        fs.rm(path, recursive=True)
    docs: dict[str, Any] = {}
    group = zarr.create_group(
        MemoryStore(docs), zarr_format=3, overwrite=True, attributes={"ome": ome, "hcc_shards": attrs}
    )
    write_label_array(
        group, label, config, lambda key, blob: storage.put_objects(fs, {f"{path}/{key}": blob})
    )
    write_foreground(group, fg, config)
    storage.put_objects(fs, {f"{path}/{key}": buf.to_bytes() for key, buf in docs.items()})
    _list_label_image(storage.join(vurl, ref.image_path, LABELS_GROUP, ZARR_JSON), case_id, storage_options)
    return row


def _document(ds: Any, rel: str) -> dict[str, Any]:
    raw = ds.store.read(rel)
    if raw is None:
        raise PredictionError(f"{ds.store.url(rel)} is missing; verify the dataset (hcc-shards verify)")
    return json.loads(raw)


def _list_label_image(url: str, case_id: str, storage_options: dict[str, Any] | None) -> None:
    """Add ``case_id`` to the OME ``labels`` list of an image's ``labels`` group (sorted, once)."""
    doc = read_json(url, storage_options)
    if doc is None:
        raise PredictionError(f"{url} is missing; verify the dataset (hcc-shards verify)")
    ome = doc.setdefault("attributes", {}).setdefault("ome", {"version": "0.5"})
    ome["labels"] = sorted({*ome.get("labels", []), case_id})
    put_json_atomic(url, doc, storage_options)


def _attributes(
    case_id: str,
    ref: Any,
    ref_attrs: dict[str, Any],
    annotated: tuple[str, ...],
    fg: dict[str, ClassForeground],
    meta: dict[str, str],
) -> dict[str, Any]:
    """The ``hcc_shards`` attributes of a prediction's label image: the writer's keys (docs/FORMAT.md),
    ``annotation.source`` ``prediction``, and ``prediction`` naming the set, model and reference."""
    provenance = dict(ref_attrs.get("provenance") or {})
    for key in ("seg_sop_instance_uid", "seg_series_instance_uid", "seg_series_description"):
        if key in provenance:
            provenance[key] = ""
    return {
        "format_version": FORMAT_VERSION,
        "case_id": case_id,
        "image_id": ref.image_id,
        "config_hash": meta["config_hash"],
        "annotated_labels": list(annotated),
        "annotation": {
            "source": SOURCE_PREDICTION,
            "source_reason": SOURCE_REASON,
            "segment_algorithm_type": SEGMENT_ALGORITHM_TYPE,
            "seg_series_description": meta["name"],
            "seg_manufacturer": "",
            "content_creator": meta["model"],
            "analysis_result_id": "",
        },
        "prediction": {"name": meta["name"], "model": meta["model"], "reference_case_id": ref.case_id},
        "foreground": {
            n: {"count": cf.count, "bbox_zyx": cf.bbox_list(), "samples": int(cf.locations.shape[0])}
            for n, cf in fg.items()
        },
        "provenance": provenance,
        "warnings": [],
        "unknown_segments": [],
    }


def _row(
    ref: Any,
    case_id: str,
    image: np.ndarray,
    label: np.ndarray,
    fg: dict[str, ClassForeground],
    annotated: tuple[str, ...],
    image_attrs: dict[str, Any],
    meta: dict[str, str],
    checksum: str,
) -> ManifestRow:
    """The prediction's row: the reference's identifiers and grid, the prediction's own statistics."""
    from hcc_shards.export.seg import on_ct_grid

    base = ManifestRow.from_dict({k: ref.metadata[k] for k in MANIFEST_COLUMNS})
    stored = ref.geometry
    src = image_attrs.get("source_geometry") or {}
    ct = Geometry(shape=tuple(src["shape_zyx"]), affine=np.asarray(src["affine"])) if src else stored
    # On the CT grid as `export seg` maps it (nearest neighbour), for the source_volume_ml_* columns.
    on_ct = np.bincount(on_ct_grid(label, stored, ct).ravel(), minlength=256)
    reference = np.asarray(ref.label)
    both = set(annotated) & set(ref.annotated_labels)
    kw: dict[str, Any] = {}
    for lab in LABELS:
        cf = fg.get(lab.name)
        kw[f"voxels_{lab.name}"] = None if cf is None else cf.count
        kw[f"volume_ml_{lab.name}"] = None if cf is None else cf.count * stored.voxel_volume_ml
        kw[f"bbox_{lab.name}"] = None if cf is None else cf.bbox_zyx
        kw[f"source_volume_ml_{lab.name}"] = (
            None if cf is None else int(on_ct[lab.value]) * ct.voxel_volume_ml
        )
        kw[f"dice_{lab.name}"] = dice(label, reference, lab.value) if lab.name in both else None
    p005, mean, p995 = hu_stats(image, label)
    return replace(
        base,
        case_id=case_id,
        seg_sop_instance_uid="",
        seg_series_instance_uid="",
        path=label_path(ref.image_id, case_id),
        hu_p005=p005,
        hu_mean=mean,
        hu_p995=p995,
        qc_flags=qc_flags({n: cf.count for n, cf in fg.items()}, annotated=fg.keys()),
        warnings=(),
        checksum=checksum,
        annotation_source=SOURCE_PREDICTION,
        segment_algorithm_type=SEGMENT_ALGORITHM_TYPE,
        seg_series_description=meta["name"],
        seg_manufacturer="",
        content_creator=meta["model"],
        analysis_result_id="",
        annotated_labels=annotated,
        reference_case_id=ref.case_id,
        **kw,
    )

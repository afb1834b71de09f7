"""Commit a dataset version: manifest, quarantine table, card, cohort figure, dataset.json, LATEST.json.

Order (docs/FORMAT.md, "Atomicity and resume"): every row's case must be complete (its image's
marker ``complete/<image_id>.json`` exists and lists it); then ``manifest.parquet``,
``quarantine.parquet``, ``DATASET.md``,
``qc/cohort.png``, ``dataset.json`` (its presence marks the version committed) and last
``OUTPUT/LATEST.json``. Each file is written whole (local: temporary file and rename; object
stores: one put).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

import hcc_shards
from hcc_shards import storage
from hcc_shards.config import BuildConfig
from hcc_shards.errors import FormatError
from hcc_shards.format import (
    AGREEMENT_PNG,
    CARD_FILE,
    CASES_PNG,
    COHORT_PNG,
    DATASET_FILE,
    FORMAT_VERSION,
    INTENSITY_PNG,
    LATEST_FILE,
    MANIFEST_FILE,
    QUARANTINE_FILE,
    TUMOR_SIZES_PNG,
    ZARR_JSON,
    latest_pointer,
    marker_path,
    metadata_path,
    version_path,
)
from hcc_shards.labels import LABELS
from hcc_shards.quarantine import QuarantineRecord
from hcc_shards.shards.atomic import exists, put_bytes_atomic, put_json_atomic, read_json
from hcc_shards.shards.card import dataset_card
from hcc_shards.shards.card_annotations import agreement_png
from hcc_shards.shards.card_clinical import write_survival
from hcc_shards.shards.manifest import SPLITS, ManifestRow, rows_to_table, write_parquet
from hcc_shards.shards.qc import cohort_png
from hcc_shards.shards.qc_cohort import cases_png, intensity_png, tumor_sizes_png
from hcc_shards.shards.research import Research, research_json, write_research
from hcc_shards.text import storable

INPUT_COUNTS = ("patients", "patients_without_seg", "ct_series", "ct_series_unused")
"""Counts of the build summary that the card shows under Counts (what the input held)."""

__all__ = ["QUARANTINE_SCHEMA", "commit_dataset", "read_latest", "version_url"]

QUARANTINE_SCHEMA = pa.schema(
    [
        ("code", pa.string()),
        ("message", pa.string()),
        ("stage", pa.string()),
        ("url", pa.string()),
        ("patient_id", pa.string()),
        ("study_instance_uid", pa.string()),
        ("series_instance_uid", pa.string()),
        ("sop_instance_uid", pa.string()),
        ("details", pa.string()),
    ]
)
"""Columns of quarantine.parquet; ``details`` is a JSON object string."""


def version_url(output_url: str, config: BuildConfig) -> str:
    """``OUTPUT/versions/<config_hash>``: one directory per build configuration."""
    return storage.join(output_url, version_path(config.config_hash()))


def read_latest(output_url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """URL of the version LATEST.json points at, or None before the first commit."""
    latest = read_json(storage.join(output_url, LATEST_FILE), storage_options)
    if latest is None:
        return None
    if latest.get("format_version") != FORMAT_VERSION:
        raise FormatError(
            f"{LATEST_FILE} format_version {latest.get('format_version')}, expected {FORMAT_VERSION}"
        )
    return storage.join(output_url, latest["path"])


def quarantine_table(records: Sequence[QuarantineRecord]) -> pa.Table:
    ordered = sorted(records, key=lambda q: q.sort_key)
    data = []
    for q in ordered:
        d = q.to_dict()
        d["details"] = json.dumps(d["details"], sort_keys=True)
        data.append({k: storable(v) if isinstance(v, str) else v for k, v in d.items()})
    return pa.Table.from_pylist(data, schema=QUARANTINE_SCHEMA)


def commit_dataset(
    output_url: str,
    rows: Sequence[ManifestRow],
    quarantine: Sequence[QuarantineRecord],
    config: BuildConfig,
    summary: dict[str, Any],
    storage_options: dict[str, Any] | None = None,
    research: Research | None = None,
    *,
    source: dict[str, Any] | None = None,
    intensity: dict[str, float] | None = None,
) -> str:
    """Write the version's tables, card and dataset.json, then LATEST.json; return the version URL.

    ``research`` (:func:`hcc_shards.shards.research.prepare_research`) adds clinical.parquet,
    features.parquet, qc/survival.png and their card sections; its rows replace ``rows``.
    ``source`` (:func:`hcc_shards.shards.card_facts.input_source`) records where the DICOM came from;
    ``intensity`` (:func:`hcc_shards.shards.intensity.intensity_properties`) is the cohort's
    foreground HU fingerprint, stored as nnU-Net's ``foreground_intensity_properties_per_channel``.
    """
    if research is not None:
        rows = research.rows
    vurl = version_url(output_url, config)
    rows = sorted(rows, key=lambda r: r.case_id)
    incomplete = _incomplete(vurl, rows, storage_options)
    if incomplete:
        raise FormatError(
            f"{len(incomplete)} manifest rows point at cases without a completion marker "
            f"({marker_path('<image_id>')}) under {vurl}: {incomplete[:5]}; write the cases "
            "(hcc_shards.shards.write_image) before committing"
        )
    _check_rows_match_cases(vurl, rows, storage_options)
    _check_patient_splits(rows)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    target = (
        tuple(config.target_spacing)
        if config.target_spacing is not None
        else tuple(np.median([r.spacing_zyx for r in rows], axis=0).tolist())
        if rows
        else None
    )
    name = str(summary.get("name", "hcc-shards dataset"))

    write_parquet(rows_to_table(rows), storage.join(vurl, MANIFEST_FILE), storage_options)
    write_parquet(quarantine_table(quarantine), storage.join(vurl, QUARANTINE_FILE), storage_options)
    if research is not None:
        write_research(vurl, research, storage_options)
    card = dataset_card(
        rows,
        quarantine,
        config,
        name=name,
        created=created,
        builder_version=hcc_shards.__version__,
        target_spacing_zyx=target or (0.0, 0.0, 0.0),
        research=research,
        source=source,
        intensity=intensity,
        input_counts={k: int(summary.get(k) or 0) for k in INPUT_COUNTS},
    )
    put_bytes_atomic(storage.join(vurl, CARD_FILE), card.encode(), storage_options)
    png = cohort_png(
        [r.source_spacing_zyx for r in rows],
        [r.spacing_zyx for r in rows],
        {lab.name: [v for r in rows if (v := r.volume_ml(lab.name)) is not None] for lab in LABELS},
    )
    put_bytes_atomic(storage.join(vurl, COHORT_PNG), png, storage_options)
    if (agreement := agreement_png(rows)) is not None:
        put_bytes_atomic(storage.join(vurl, AGREEMENT_PNG), agreement, storage_options)
    if research is not None:
        write_survival(vurl, research, storage_options)
    for png, figure in (
        (CASES_PNG, cases_png),
        (INTENSITY_PNG, intensity_png),
        (TUMOR_SIZES_PNG, tumor_sizes_png),
    ):
        put_bytes_atomic(storage.join(vurl, png), figure(rows), storage_options)
    split_counts = Counter(r.split for r in rows)
    dataset = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "builder_version": hcc_shards.__version__,
        "config_hash": config.config_hash(),
        "config": json.loads(json.dumps(config.to_dict(), default=list)),
        "target_spacing_zyx": list(target) if target is not None else None,
        "labels": [
            {"value": lab.value, "name": lab.name, "display": lab.display, "rgba": list(lab.rgba)}
            for lab in LABELS
        ],
        "counts": {
            "cases": len(rows),
            "quarantined": len(quarantine),
            "patients": len({r.patient_id for r in rows}),
            "by_split": {s: split_counts.get(s, 0) for s in SPLITS},
            "quarantine_by_reason": dict(sorted(Counter(q.code for q in quarantine).items())),
        },
        "summary": json.loads(json.dumps(summary, default=str)),
        "created": created,
    }
    if research is not None:
        dataset.update(research_json(research))
    if source is not None:
        dataset["source"] = source
    if intensity is not None:
        dataset["foreground_intensity_properties_per_channel"] = {"0": intensity}
    put_json_atomic(storage.join(vurl, DATASET_FILE), dataset, storage_options)
    put_json_atomic(
        storage.join(output_url, LATEST_FILE), latest_pointer(config.config_hash()), storage_options
    )
    return vurl


def _check_rows_match_cases(
    vurl: str, rows: Sequence[ManifestRow], storage_options: dict[str, Any] | None
) -> None:
    """Refuse a manifest whose rows are not the cases on disk: one row per case id, each image's
    marker naming the row's case with the same checksum, and the image's group metadata
    (``zarr.json``) present."""
    ids = [r.case_id for r in rows]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise FormatError(f"manifest lists case ids more than once: {dup[:5]}; nothing was committed")
    markers: dict[str, dict[str, str]] = {}
    for r in rows:
        if r.image_id not in markers:
            marker = read_json(storage.join(vurl, marker_path(r.image_id)), storage_options) or {}
            markers[r.image_id] = {c.get("case_id"): c.get("checksum") for c in marker.get("cases", [])}
            if not exists(storage.join(vurl, metadata_path(r.image_path)), storage_options):
                raise FormatError(
                    f"image {r.image_id}: {ZARR_JSON} is missing under {vurl}; nothing was committed"
                )
        if markers[r.image_id].get(r.case_id) != r.checksum:
            raise FormatError(
                f"case {r.case_id}: the marker of image {r.image_id} gives checksum "
                f"{markers[r.image_id].get(r.case_id)!r}, the manifest row has {r.checksum!r}; another "
                "build wrote it meanwhile? nothing was committed"
            )


def _incomplete(vurl: str, rows: Sequence[ManifestRow], storage_options: dict[str, Any] | None) -> list[str]:
    """Case ids whose image marker is missing or does not list them."""
    listed: dict[str, set[str]] = {}
    out = []
    for r in rows:
        if r.image_id not in listed:
            marker = (
                read_json(storage.join(vurl, marker_path(r.image_id)), storage_options)
                if r.image_id
                else None
            )
            listed[r.image_id] = {c.get("case_id") for c in (marker or {}).get("cases", [])}
        if r.case_id not in listed[r.image_id]:
            out.append(r.case_id)
    return out


def _check_patient_splits(rows: Sequence[ManifestRow]) -> None:
    seen: dict[str, str] = {}
    for r in rows:
        if seen.setdefault(r.patient_id, r.split) != r.split:
            raise FormatError(
                f"patient {r.patient_id} is in splits {seen[r.patient_id]!r} and {r.split!r}; "
                "splits are patient-level"
            )

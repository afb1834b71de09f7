"""Check a built dataset against its own checksums: every stored byte of every case.

Order of operations of :func:`verify_dataset`: 1. open the dataset as a reader does
(``LATEST.json``, ``dataset.json``, ``manifest.parquet``); a failure there is a dataset problem.
2. For each manifest row (prediction rows included), in parallel: read its marker (``complete/<image_id>.json``,
``complete/predictions/<name>.json`` for a prediction, ``_COMPLETE.json`` in format 1) and compare
its checksum with the manifest's; read the group attributes; decode every stored chunk of the image and label
arrays and every foreground array (each chunk and shard index carries a crc32c); recompute the
content checksum of docs/FORMAT.md (``_COMPLETE.json``) from the decoded content and compare it
with the manifest's. Any difference or error is a problem of that case.

Uses the thin reader (:mod:`hcc_shards.read`) only, so it checks what a training job would read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcc_shards.annotation import SOURCE_PREDICTION
from hcc_shards.errors import HccShardsError
from hcc_shards.format import (
    DATASET_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    V1_MARKER_FILE,
    checksum_prefix,
    marker_path,
)
from hcc_shards.prediction_names import prediction_marker_path

__all__ = ["CaseProblem", "VerifyReport", "content_checksum", "verify_case", "verify_dataset"]


LABEL_ORDER = ("liver", "tumor", "portal_vein", "aorta")
"""Foreground arrays in checksum order (docs/FORMAT.md, ``_COMPLETE.json``)."""


@dataclass(frozen=True)
class CaseProblem:
    """Why one case failed verification."""

    case_id: str
    problem: str
    """What was expected and what was found."""


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_dataset`."""

    url: str
    """What was opened."""
    version: str
    """Dataset version (config hash); '' when the dataset could not be opened."""
    cases: int
    """Manifest rows checked."""
    problems: tuple[CaseProblem, ...]
    """One entry per corrupted or incomplete case, sorted by case id."""
    dataset_problem: str = ""
    """Why the dataset itself could not be opened ('' when it could)."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.dataset_problem

    @property
    def corrupted_cases(self) -> tuple[str, ...]:
        return tuple(p.case_id for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "version": self.version,
            "cases": self.cases,
            "ok": self.ok,
            "dataset_problem": self.dataset_problem,
            "problems": [{"case_id": p.case_id, "problem": p.problem} for p in self.problems],
        }


def content_checksum(
    image: np.ndarray,
    label: np.ndarray,
    foreground: dict[str, np.ndarray],
    attributes: dict[str, Any],
    format_version: int = FORMAT_VERSION,
) -> str:
    """The content checksum of docs/FORMAT.md from decoded arrays and the ``hcc_shards`` attributes.

    Labels absent from ``foreground`` (not annotated, format 2) hash nothing."""
    h = hashlib.sha256(checksum_prefix(format_version))
    h.update(np.ascontiguousarray(image, dtype="<i2").data)
    h.update(np.ascontiguousarray(label, dtype=np.uint8).data)
    for name in LABEL_ORDER:
        if name in foreground:
            h.update(np.ascontiguousarray(foreground[name], dtype="<i4").data)
    attrs = {k: v for k, v in attributes.items() if k != "qc_flags"}
    h.update(json.dumps(attrs, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def verify_case(case: Any) -> str | None:
    """None when ``case`` (a :class:`hcc_shards.read.Case`) matches its checksums, else the problem."""
    try:
        return _check(case)
    except (HccShardsError, ValueError, KeyError, TypeError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _check(case: Any) -> str | None:
    store = case.dataset.store
    expected = case.metadata.get("checksum")
    version = case.dataset.info.format_version
    # Version 1's marker lies in the case group the manifest names.
    if version == 1:
        where = f"{case.path}/{V1_MARKER_FILE}"
    elif case.annotation_source == SOURCE_PREDICTION:
        # A prediction row names its set in seg_series_description (docs/FORMAT.md, "Predictions").
        where = prediction_marker_path(str(case.metadata.get("seg_series_description") or ""))
    else:
        where = marker_path(case.image_id)
    raw = store.read(where)
    if raw is None:
        return f"{where} is missing: the case was never completed"
    marker = json.loads(raw)
    if version != 1:
        entry = next((c for c in marker.get("cases", []) if c.get("case_id") == case.case_id), None)
        if entry is None:
            return f"{where} does not list case {case.case_id!r}"
        marker = entry
    if marker.get("checksum") != expected:
        return f"{where} checksum {marker.get('checksum')!r} != manifest checksum {expected!r}"
    if marker.get("case_id") != case.case_id:
        return f"{where} names case {marker.get('case_id')!r}"
    attrs = case.attributes
    image = np.asarray(case.image)
    label = np.asarray(case.label)
    names = LABEL_ORDER if version == 1 else tuple(n for n in LABEL_ORDER if n in case.annotated_labels)
    foreground = {name: case.foreground(name) for name in names}
    got = content_checksum(image, label, foreground, attrs, version)
    if got != expected:
        return f"content checksum {got} != manifest checksum {expected} (decoded data or attributes differ)"
    return None


def count_problem(ds: Any) -> str:
    """'' when ``dataset.json``'s counts match the manifest (cases, patients, splits), else the difference.

    Prediction rows are not counted: they are written after the commit, in their own tables."""
    counts = (ds.info.raw or {}).get("counts") or {}
    table = ds.manifest
    rows = table.to_pylist() if hasattr(table, "to_pylist") else list(table)
    rows = [r for r in rows if r.get("annotation_source") != SOURCE_PREDICTION]
    got = {
        "cases": len(rows),
        "patients": len({r["patient_id"] for r in rows}),
    }
    for key, value in got.items():
        if key in counts and int(counts[key]) != value:
            return f"{DATASET_FILE} counts {key}={counts[key]} but {MANIFEST_FILE} holds {value}"
    by_split = counts.get("by_split") or {}
    for split, n in by_split.items():
        have = sum(1 for r in rows if r.get("split") == split)
        if int(n) != have:
            return f"{DATASET_FILE} counts {n} cases in split {split!r} but {MANIFEST_FILE} holds {have}"
    return ""


def verify_dataset(
    url: str,
    storage_options: dict[str, Any] | None = None,
    version: str | None = None,
    *,
    workers: int = 4,
    progress: Callable[[str, str | None], None] | None = None,
) -> VerifyReport:
    """Check every case of the dataset at ``url``; ``progress(case_id, problem)`` after each case."""
    from hcc_shards.read import open_dataset

    try:
        ds = open_dataset(url, storage_options, version)
    except (HccShardsError, OSError, ValueError) as exc:
        return VerifyReport(url, "", 0, (), dataset_problem=f"{type(exc).__name__}: {exc}")

    counted = count_problem(ds)
    if counted:
        return VerifyReport(url, ds.version, 0, (), dataset_problem=counted)

    def one(case_id: str) -> CaseProblem | None:
        problem = verify_case(ds.case(case_id))
        if progress is not None:
            progress(case_id, problem)
        return None if problem is None else CaseProblem(case_id, problem)

    ids = list(ds.case_ids)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = [p for p in pool.map(one, ids) if p is not None]
    return VerifyReport(url, ds.version, len(ids), tuple(sorted(found, key=lambda p: p.case_id)))

"""The research outputs of a commit: clinical join, cohort splits, radiomics features.

Order of operations (:func:`prepare_research`, called by the commit step with every row known):

1. **clinical**: read and type the table (:mod:`hcc_shards.clinical`), map its IDs through the
   build's pseudonymizer when it has a key (the manifest holds pseudonyms, so the join happens on
   pseudonyms and the raw ID column is dropped), join to the patients of the rows;
2. **splits**: from the split file, else the built-in assignment, stratified by ``stratify_by``
   (a clinical column, else a manifest column: the value of the patient's first case);
3. the rows come back with ``split`` and ``fold`` set.

:func:`write_research` then writes ``clinical.parquet``, ``features.parquet`` and
``qc/survival.png`` (commit order in docs/FORMAT.md); :func:`research_json` gives their entries of
``dataset.json``. A clinical table that cannot be read never fails the commit: it is reported.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hcc_shards import storage
from hcc_shards.clinical import (
    ClinicalJoin,
    NoKeyColumn,
    join_clinical,
    load_clinical,
    unreadable_join,
    write_clinical,
)
from hcc_shards.config import BuildConfig
from hcc_shards.errors import ConfigError
from hcc_shards.format import CLINICAL_FILE, FEATURES_FILE
from hcc_shards.shards.atomic import put_bytes_atomic
from hcc_shards.shards.manifest import MANIFEST_COLUMNS, ManifestRow
from hcc_shards.shards.splits import SplitFile, SplitReport, assign_splits, splits_from_file, strata_of

__all__ = ["Research", "prepare_research", "research_json", "write_research"]


@dataclass(frozen=True)
class Research:
    """What a commit adds beside the manifest."""

    rows: tuple[ManifestRow, ...]
    """The manifest rows with ``split`` and ``fold`` of the cohort assignment."""
    splits: SplitReport
    """How the splits were made."""
    clinical: ClinicalJoin | None = None
    """The joined clinical table (None without --clinical)."""
    features: pa.Table | None = None
    """features.parquet (None without --features)."""
    feature_settings: tuple[tuple[str, Any], ...] = ()
    """Extraction settings recorded in dataset.json and the card."""


def prepare_research(
    rows: Sequence[ManifestRow],
    config: BuildConfig,
    *,
    clinical_url: str = "",
    clinical_key: str = "",
    split_file: SplitFile | None = None,
    storage_options: dict[str, Any] | None = None,
    pseudonym: Callable[[str], str] | None = None,
    features: pa.Table | None = None,
    feature_settings: tuple[tuple[str, Any], ...] = (),
) -> Research:
    """Steps 1-3 of the module docstring."""
    patients = sorted({r.patient_id for r in rows})
    clinical = None
    if clinical_url:
        try:
            table = load_clinical(clinical_url, storage_options, clinical_key or None)
            clinical = join_clinical(table, patients, pseudonym)
        except NoKeyColumn as e:
            clinical = replace(
                unreadable_join(clinical_url, str(e), patients), problems=_as_no_key(e, patients)
            )
        except ConfigError as e:
            clinical = unreadable_join(clinical_url, str(e), patients)
    if split_file is not None and split_file.folds:
        assignment, problems = splits_from_file(
            split_file, {r.case_id: r.patient_id for r in rows}, pseudonym
        )
        report = SplitReport(method="file", folds=len(split_file.folds), problems=problems)
    else:
        strata, edges, problems = None, (), []
        column = config.stratify_by
        if column:
            values = _values(column, rows, clinical)
            if values is None:
                problems.append(f"stratify_by column {column!r} is neither a clinical nor a manifest column")
            else:
                strata, edges = strata_of(values)
        assignment = assign_splits(
            patients, config.seed, config.split_fractions, strata=strata, folds=config.folds
        )
        counts: dict[str, int] = {}
        for s in (strata or {}).values():
            counts[s] = counts.get(s, 0) + 1
        report = SplitReport(
            method="stratified" if strata is not None else "cohort",
            stratify_by=column if strata is not None else "",
            strata=tuple(sorted(counts.items())),
            edges=tuple(edges),
            folds=config.folds,
            problems=tuple(problems),
        )
    new_rows = tuple(
        replace(r, split=assignment[r.patient_id].split, fold=assignment[r.patient_id].fold) for r in rows
    )
    return Research(new_rows, report, clinical, features, feature_settings)


def write_research(vurl: str, research: Research, storage_options: dict[str, Any] | None = None) -> None:
    """clinical.parquet and features.parquet (before DATASET.md), qc/survival.png (before dataset.json)."""
    if research.clinical is not None:
        put_bytes_atomic(
            storage.join(vurl, CLINICAL_FILE), write_clinical(research.clinical), storage_options
        )
    if research.features is not None:
        buf = io.BytesIO()
        pq.write_table(research.features, buf, compression="zstd")
        put_bytes_atomic(storage.join(vurl, FEATURES_FILE), buf.getvalue(), storage_options)


def research_json(research: Research) -> dict[str, Any]:
    """The entries ``clinical``, ``splits`` and ``features`` of dataset.json."""
    out: dict[str, Any] = {"splits": research.splits.to_dict()}
    folds = [r.fold for r in research.rows if r.fold is not None]
    out["splits"]["by_fold"] = {str(f): folds.count(f) for f in sorted(set(folds))}
    c = research.clinical
    if c is not None:
        out["clinical"] = {
            "path": CLINICAL_FILE if c.sha256 else None,
            "source": c.source,
            "sha256": c.sha256,
            "key": c.key,
            "pseudonymized": c.pseudonymized,
            "rows": c.rows,
            "patients": c.patients,
            "joined": c.joined,
            "safe_names": dict(c.safe),
            "problems": c.counts(),
        }
    if research.features is not None:
        out["features"] = {
            "path": FEATURES_FILE,
            "rows": research.features.num_rows,
            "settings": dict(research.feature_settings),
        }
    return out


def unchanged(vurl: str, research: Research, storage_options: dict[str, Any] | None = None) -> bool:
    """True when the stored clinical.parquet and features.parquet equal what this commit would write."""
    fs, base = storage.filesystem(vurl, storage_options)
    for name, table in (
        (
            CLINICAL_FILE,
            None
            if research.clinical is None
            else pq.read_table(io.BytesIO(write_clinical(research.clinical))),
        ),
        (FEATURES_FILE, research.features),
    ):
        path = f"{base}/{name}"
        if table is None:
            if fs.exists(path):
                return False
            continue
        try:
            with fs.open(path, "rb") as f:
                stored = pq.read_table(f)
        except FileNotFoundError:
            return False
        if not stored.equals(table):
            return False
    return True


def _values(column: str, rows: Sequence[ManifestRow], clinical: ClinicalJoin | None) -> dict[str, Any] | None:
    patients = sorted({r.patient_id for r in rows})
    if clinical is not None and clinical.rows:
        try:
            found = clinical.values(column)
        except KeyError:
            found = None
        if found is not None:
            return {p: found.get(p) for p in patients}
    if column in MANIFEST_COLUMNS:
        first: dict[str, Any] = {}
        for r in sorted(rows, key=lambda r: r.case_id):
            v = getattr(r, column)
            first.setdefault(r.patient_id, v if isinstance(v, (int, float, str)) or v is None else str(v))
        return first
    return None


def _as_no_key(e: NoKeyColumn, patients: Sequence[str]):
    from hcc_shards.clinical import ClinicalProblem

    return (
        ClinicalProblem("no_key_column", value=str(e)),
        *(ClinicalProblem("case_without_row", patient_id=p) for p in patients),
    )

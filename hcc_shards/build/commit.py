"""The commit: every outcome gathered in one place, the summary computed from them (never from an
engine's metrics), then one commit of manifest, quarantine table, card and dataset.json."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import pyarrow.parquet as pq

from hcc_shards import storage
from hcc_shards.build import progress
from hcc_shards.build.failures import pseudonymizer
from hcc_shards.build.index import IndexStats, add_index_stats
from hcc_shards.build.outcomes import CaseBuilt, Indexed, Outcome, Quarantined, TargetResolved
from hcc_shards.build.plan import BuildPlan
from hcc_shards.build.target import BuildTarget
from hcc_shards.features import SETTINGS as FEATURE_SETTINGS
from hcc_shards.features import FeatureRow, features_table
from hcc_shards.quarantine import QuarantineRecord
from hcc_shards.shards import ManifestRow, commit_dataset, version_url
from hcc_shards.shards.card_facts import input_source
from hcc_shards.shards.commit import quarantine_table
from hcc_shards.shards.intensity import intensity_properties, merge_histograms
from hcc_shards.shards.manifest import rows_to_table
from hcc_shards.shards.research import prepare_research
from hcc_shards.shards.research import unchanged as research_unchanged


@dataclass(frozen=True)
class Summary:
    """What a build did, computed from its outcomes (not from runner metrics)."""

    version_url: str
    """Dataset version the build wrote (or found complete)."""
    config_hash: str
    """Hash of the resolved BuildConfig: the version folder's name."""
    cases_total: int
    """Cases selected (after --limit)."""
    cases_written: int
    """Cases written by this run."""
    cases_resumed: int
    """Cases found complete and kept."""
    quarantined: int
    """Quarantine records of this build (files, SEGs and cases set aside)."""
    quarantined_by_reason: tuple[tuple[str, int], ...]
    """(reason code, count), sorted by code."""
    files: int
    """Input objects listed."""
    bytes_read: int
    """Header bytes plus the bytes of every input read in full."""
    bytes_written: int
    """Bytes of the cases written by this run (arrays, markers, QC images)."""
    wall_seconds: float
    """From the launcher's start to the commit."""
    cases_per_minute: float
    """Cases written (or resumed) per minute of wall time."""
    committed: bool
    """False when the version was already committed with the same manifest and quarantine."""
    target_spacing_zyx: tuple[float, float, float] | None = None
    """Resolved target spacing in mm; None when the build had no case."""
    refused: str = ""
    """Why nothing was committed although something changed ('' when committed or unchanged):
    a build with no case to write leaves LATEST.json as it was unless --allow_empty."""
    input_index: tuple[dict[str, Any], ...] = ()
    """Per ``idc://`` INPUT entry: the index's counts and version (idc-index-data, IDC release);
    empty for other inputs."""
    split_method: str = ""
    """How the splits were made: ``cohort``, ``stratified`` or ``file``."""
    split_problems: tuple[str, ...] = ()
    """Findings of the split step (unknown split-file entries, a missing stratification column)."""
    clinical_joined: str = ""
    """``joined/patients`` of the clinical table, '' without --clinical."""
    clinical_problems: tuple[tuple[str, int], ...] = ()
    """(problem kind, count) of the clinical table, kinds with a count only."""
    patients: int = 0
    """Patients with a usable header in the input."""
    patients_without_seg: int = 0
    """Of them, patients with CT but no SEG: nothing to build, and counted rather than dropped."""
    ct_series: int = 0
    """CT series with a usable header."""
    ct_series_unused: int = 0
    """Of them, CT series that no case of this build labels (no SEG, another phase, or left out
    by --limit or --annotation-sources)."""

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["quarantined_by_reason"] = dict(self.quarantined_by_reason)
        d["target_spacing_zyx"] = list(self.target_spacing_zyx) if self.target_spacing_zyx else None
        d["input_index"] = [dict(x) for x in self.input_index]
        d["split_problems"] = list(self.split_problems)
        d["clinical_problems"] = dict(self.clinical_problems)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        d = dict(data)
        d["quarantined_by_reason"] = tuple(
            sorted((str(k), int(v)) for k, v in d["quarantined_by_reason"].items())
        )
        ts = d.get("target_spacing_zyx")
        d["target_spacing_zyx"] = tuple(ts) if ts else None
        d["input_index"] = tuple(dict(x) for x in d.get("input_index") or ())
        d["split_problems"] = tuple(d.get("split_problems") or ())
        d["clinical_problems"] = tuple(
            sorted((str(k), int(v)) for k, v in (d.get("clinical_problems") or {}).items())
        )
        return cls(**d)


@dataclass(frozen=True)
class _Gathered:
    rows: list[ManifestRow]
    records: list[QuarantineRecord]
    target: BuildTarget
    index: IndexStats
    written: int
    resumed: int
    bytes_read: int
    bytes_written: int
    features: tuple[FeatureRow, ...] = ()
    hu_histogram: tuple[tuple[int, int], ...] = ()


def gather(outcomes: Iterable[Outcome], plan: BuildPlan) -> _Gathered:
    """Sort outcomes into rows, records and totals; rows by case_id, records by their sort key."""
    rows: dict[str, ManifestRow] = {}
    records: list[QuarantineRecord] = []
    target: BuildTarget | None = None
    index = IndexStats()
    written = resumed = bytes_read = bytes_written = 0
    features: dict[str, tuple[FeatureRow, ...]] = {}
    histograms = []
    for o in outcomes:
        if isinstance(o, CaseBuilt):
            bytes_read += o.bytes_read
            bytes_written += o.bytes_written
            rows[o.row.case_id] = o.row
            features[o.row.case_id] = o.features
            histograms.append(o.hu_histogram)
            resumed += int(o.resumed)
            written += int(not o.resumed)
        elif isinstance(o, Quarantined):
            records.append(o.record)
        elif isinstance(o, Indexed):
            index = add_index_stats([index, o.stats])
            bytes_read += o.stats.bytes_read
        elif isinstance(o, TargetResolved):
            target = o.target
    if target is None:  # no pairing at all: the version of the unresolved config
        target = BuildTarget(plan.config, version_url(plan.output_url, plan.config), 0)
    return _Gathered(
        rows=[rows[k] for k in sorted(rows)],
        records=sorted(set(records), key=lambda q: q.sort_key),
        target=target,
        index=index,
        written=written,
        resumed=resumed,
        bytes_read=bytes_read,
        bytes_written=bytes_written,
        features=tuple(f for k in sorted(features) for f in features[k]),
        hu_histogram=merge_histograms(histograms),
    )


def commit_outcomes(outcomes: Iterable[Outcome], plan: BuildPlan) -> Summary:
    """The terminal step: summary from the outcomes, then one commit (skipped when nothing changed)."""
    progress.mark_commit(plan.progress_dir)
    g = gather(outcomes, plan)
    config = g.target.config
    pseudo = pseudonymizer(plan.config.pseudonymize_key)
    research = prepare_research(
        g.rows,
        config,
        clinical_url=plan.clinical_url,
        clinical_key=plan.clinical_key,
        split_file=plan.split_file,
        storage_options=plan.input_storage_options,
        pseudonym=pseudo.patient_id if pseudo is not None else None,
        features=features_table(g.features) if config.features else None,
        feature_settings=FEATURE_SETTINGS if config.features else (),
    )
    unchanged = _already_committed(
        g.target.version_url, list(research.rows), g.records, plan.output_storage_options
    ) and research_unchanged(g.target.version_url, research, plan.output_storage_options)
    wall = max(time.time() - plan.started_at, 1e-9) if plan.started_at else 0.0
    done = g.written + g.resumed
    summary = Summary(
        version_url=g.target.version_url,
        config_hash=config.config_hash(),
        cases_total=g.target.cases,
        cases_written=g.written,
        cases_resumed=g.resumed,
        quarantined=len(g.records),
        quarantined_by_reason=tuple(sorted(Counter(r.code for r in g.records).items())),
        files=g.index.files,
        bytes_read=g.bytes_read,
        bytes_written=g.bytes_written,
        wall_seconds=round(wall, 3),
        cases_per_minute=round(60.0 * done / wall, 3) if wall else 0.0,
        committed=not unchanged,
        target_spacing_zyx=config.target_spacing,
        input_index=plan.input_index,
        split_method=research.splits.method,
        split_problems=research.splits.problems,
        clinical_joined=f"{research.clinical.joined}/{research.clinical.patients}"
        if research.clinical
        else "",
        clinical_problems=tuple((k, n) for k, n in research.clinical.counts().items() if n)
        if research.clinical
        else (),
        patients=len(g.index.patients),
        patients_without_seg=len(g.index.patients - g.index.seg_patients),
        ct_series=len(g.index.ct_series),
        ct_series_unused=len(g.index.ct_series - {r.ct_series_instance_uid for r in g.rows}),
    )
    if not unchanged and not g.rows and not plan.allow_empty:
        summary = replace(
            summary,
            committed=False,
            refused=f"no case to write ({len(g.records)} quarantined, {g.index.files} files listed); nothing "
            "was committed and LATEST.json is unchanged (pass --allow-empty to commit an empty version)",
        )
    elif not unchanged:
        commit_dataset(
            plan.output_url,
            g.rows,
            g.records,
            config,
            summary.to_dict(),
            plan.output_storage_options,
            research=research,
            source=_source_of(plan),
            intensity=intensity_properties(g.hu_histogram),
        )
    if plan.progress_dir:
        progress.write_json(os.path.join(plan.progress_dir, "summary.json"), summary.to_dict())
    return summary


def _source_of(plan: BuildPlan) -> dict[str, Any]:
    """Where the DICOM came from, for dataset.json and the card (no input URL when pseudonymizing:
    folder names may carry identifiers)."""
    versions = sorted(
        {
            f"idc-index-data {r.get('idc_index_data')}, IDC release {r.get('idc_release')}"
            for r in plan.input_index
        }
    )
    source = input_source(plan.input_url, index_version="; ".join(versions) or None)
    if plan.config.pseudonymize_key:
        return {k: v for k, v in source.items() if k != "input"}
    return source


def _already_committed(
    vurl: str, rows: list[ManifestRow], records: list[QuarantineRecord], storage_options: dict[str, Any]
) -> bool:
    """True when ``vurl`` is committed with exactly these rows and records (a rerun changes nothing)."""
    fs, base = storage.filesystem(vurl, storage_options)
    try:
        if not fs.exists(f"{base}/dataset.json"):
            return False
        with fs.open(f"{base}/manifest.parquet", "rb") as f:
            manifest = pq.read_table(f)
        with fs.open(f"{base}/quarantine.parquet", "rb") as f:
            quarantine = pq.read_table(f)
    except FileNotFoundError:
        return False
    return manifest.equals(rows_to_table(rows)) and quarantine.equals(quarantine_table(records))

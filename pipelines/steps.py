"""The build's steps as plain functions (no Beam): what each pipeline transform calls.

Order of operations (docs/FORMAT.md), with the function that does each step:

1. :func:`listing_tasks` / :func:`list_files`: list every object under the input's prefixes, in
   parallel: one prefix is split by the hash of its top-level names, many prefixes (a list of
   series) are dealt out to the tasks.
2. :func:`index_one`: read one file's header (a few KiB), or a quarantine record.
3. :func:`pair_one_patient`: all headers of one PatientID -> pairings and quarantine records.
4. :func:`resolve_target`: the target spacing (explicit, or 'auto' from the selected pairings),
   hence the config hash and the version URL.
5. :func:`build_case`: decode, resample and write one case, or skip it when its completion marker
   already exists (resume). Every failure is caught here and becomes a quarantine record with
   the case key.
6. :func:`commit_outcomes`: one terminal step gathers every outcome, computes the summary from
   them, and commits manifest, quarantine table, card and dataset.json.

Progress reports go to a local directory (``BuildPlan.progress_dir``), never to the output.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import pyarrow.parquet as pq

from hcc_shards import storage
from hcc_shards.case import make_case_id
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import decode_pairing, provenance_of, record_for
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import Pairing, pair_patient
from hcc_shards.errors import QuarantineError
from hcc_shards.pseudonymize import Pseudonymizer
from hcc_shards.quarantine import QuarantineRecord, Reason
from hcc_shards.resample import resample_case
from hcc_shards.shards import (
    ManifestRow,
    auto_target_spacing,
    commit_dataset,
    read_complete_case,
    split_for_patient,
    version_url,
    write_case,
)
from hcc_shards.shards.card_facts import input_source
from hcc_shards.shards.commit import quarantine_table
from hcc_shards.shards.intensity import foreground_histogram, intensity_properties, merge_histograms
from hcc_shards.shards.manifest import rows_to_table
from hcc_shards.shards.writer import case_path, stored_histogram
from pipelines import progress as stage_progress
from pipelines.options import BuildPlan, resolve_inputs

_LOG = logging.getLogger("hcc_shards.build")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
"""Errors worth another attempt at the case boundary (object stores also retry inside fsspec)."""
PERMANENT_STORAGE_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, PermissionError)
"""Errors that quarantine the input as ``storage_error`` at once."""
CASE_ATTEMPTS = 3
"""Attempts per case when transient errors occur."""

T = TypeVar("T")


# -- 1. listing --------------------------------------------------------------------------


@dataclass(frozen=True)
class ListingTask:
    """One of ``shards`` listing tasks of a build."""

    roots: tuple[str, ...]
    """Input prefixes or object URLs this task lists (sorted)."""
    shard: int
    """Index of this task, 0 .. shards - 1 (distinct per task: the key that spreads the tasks)."""
    shards: int
    """Number of listing tasks."""
    split: bool = False
    """True (fewer roots than tasks, e.g. one bucket prefix): every task lists the top level of
    every root and keeps the entries whose name hashes to ``shard``. False (many roots, e.g. a list
    of IDC series): the roots are dealt out to the tasks and each task lists its own roots whole."""


@dataclass(frozen=True)
class FileRef:
    """One listed input object."""

    url: str
    """fsspec URL (a plain path for local files)."""
    size: int
    """Size in bytes, from the listing."""


def listing_tasks(plan: BuildPlan) -> list[ListingTask]:
    """The listing tasks of a build (:func:`pipelines.options.resolve_inputs` gives the roots).

    Reads INPUT's ``@`` list files and checks that local entries exist; nothing else, so the
    construction of a pipeline over prefixes stays offline.
    """
    roots = resolve_inputs(plan.input_url, plan.input_storage_options)
    n = plan.listing_shards
    if len(roots) < n:
        return [ListingTask(roots, i, n, split=True) for i in range(n)]
    return [ListingTask(roots[i::n], i, n) for i in range(n)]


def shard_of(name: str, shards: int) -> int:
    """Stable owner of a top-level entry (same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big") % shards


def list_files(task: ListingTask, storage_options: dict[str, Any]) -> list[FileRef]:
    """Every object this task owns under its roots, sorted by URL, each once.

    A root that is neither an object nor a prefix with objects under it (nor an existing local
    folder) is an error that names it: a typo in INPUT or in a list file fails the build in this
    first stage, before any header is read.
    """
    refs: dict[str, FileRef] = {}
    missing: list[str] = []
    for root in task.roots:
        found = _list_root(root, task, storage_options)
        if found is None:
            missing.append(root)
        else:
            refs.update((r.url, r) for r in found)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(
            f"input {shown}{more} does not exist or cannot be listed (no object at or under it)"
        )
    return sorted(refs.values(), key=lambda r: r.url)


def list_task(task: ListingTask, plan: BuildPlan) -> list[FileRef]:
    """:func:`list_files` for one task of ``plan``, reported to its progress directory."""
    refs = list_files(task, plan.input_storage_options)
    stage_progress.mark_listed(plan.progress_dir, task.shard, len(refs))
    return refs


MAX_SPLIT_DEPTH = 3
"""Levels a split listing descends below a root to find as many entries as there are tasks."""


def _list_root(root: str, task: ListingTask, storage_options: dict[str, Any]) -> list[FileRef] | None:
    """The objects of ``task``'s share of one root; None when the root does not exist."""
    fs, path = storage.filesystem(root, storage_options)
    local = storage.protocol_of(root) == "file"

    def url_of(p: str) -> str:
        return p if local else storage.unstrip(fs, p)

    def mine(name: str) -> bool:
        return not task.split or shard_of(name.rstrip("/").rsplit("/", 1)[-1], task.shards) == task.shard

    if fs.isfile(path):
        return [FileRef(url_of(path), int(fs.size(path)))] if mine(path) else []
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return None
    if not entries and not fs.isdir(path):
        return None
    if task.split:
        entries = _spread_level(fs, entries, task.shards)
    refs: list[FileRef] = []
    for entry in entries:
        name = entry["name"].rstrip("/")
        if not mine(name):
            continue
        if entry.get("type") == "directory":
            found = fs.find(name, detail=True)
            refs.extend(FileRef(url_of(p), int(info.get("size") or 0)) for p, info in found.items())
        else:
            refs.append(FileRef(url_of(name), int(entry.get("size") or 0)))
    return refs


def _spread_level(fs: Any, entries: list[dict[str, Any]], shards: int) -> list[dict[str, Any]]:
    """The first level under a root with at least ``shards`` entries (at most MAX_SPLIT_DEPTH down).

    A collection often sits in one wrapper folder (a TCIA download's ``manifest-*/HCC-TACE-Seg/``,
    a bucket's ``dicom/``): split at the top, one task would own every file and list and index
    them alone. Folders are opened level by level until there are enough entries to share out.
    Every task sees the same listing, so each entry still has exactly one owner.
    """
    for _ in range(MAX_SPLIT_DEPTH):
        folders = [e for e in entries if e.get("type") == "directory"]
        if len(entries) >= shards or not folders:
            break
        opened = [e for e in entries if e.get("type") != "directory"]
        for folder in folders:
            opened.extend(fs.ls(folder["name"].rstrip("/"), detail=True))
        entries = opened
    return entries


def is_record(item: object) -> bool:
    """True for a QuarantineRecord (a filter that splits results from records)."""
    return isinstance(item, QuarantineRecord)


def is_not_record(item: object) -> bool:
    return not isinstance(item, QuarantineRecord)


# -- 2. header index ---------------------------------------------------------------------


def index_one(ref: FileRef, plan: BuildPlan) -> InstanceHeader | QuarantineRecord:
    """The header of one file, or why not; unexpected errors become ``internal_error`` records.

    With a pseudonymization key, identifiers are replaced here, before anything else sees them.
    """
    try:
        result = _with_retries(lambda: index_file(ref.url, plan.input_storage_options, plan.config))
    except Exception as exc:
        result = QuarantineRecord(
            code=_reason_of(exc).value,
            message=f"indexing failed: {type(exc).__name__}: {exc}",
            stage="index",
            url=ref.url,
            details=(("traceback", _short_traceback(exc)),),
        )
    stage_progress.mark_indexed(plan.progress_dir)
    pseudo = _pseudonymizer(plan.config.pseudonymize_key)
    if pseudo is None:
        return result
    if isinstance(result, InstanceHeader):
        return pseudo.header(result)
    return pseudo.record(result, [ref.url])


@dataclass(frozen=True)
class IndexStats:
    """Totals of the listing and header stage (summed across workers)."""

    files: int = 0
    """Objects listed and indexed."""
    headers: int = 0
    """Objects that yielded a usable header."""
    bytes_read: int = 0
    """Bytes fetched to read headers."""


def index_stats(item: InstanceHeader | QuarantineRecord) -> IndexStats:
    if isinstance(item, InstanceHeader):
        return IndexStats(files=1, headers=1, bytes_read=int(item.bytes_read))
    return IndexStats(files=1)


def add_index_stats(parts: Iterable[IndexStats]) -> IndexStats:
    """Associative, commutative sum (a CombineGlobally function)."""
    files = headers = read = 0
    for p in parts:
        files, headers, read = files + p.files, headers + p.headers, read + p.bytes_read
    return IndexStats(files=files, headers=headers, bytes_read=read)


# -- 3. pairing --------------------------------------------------------------------------


def pair_one_patient(
    patient_id: str, headers: Iterable[InstanceHeader], plan: BuildPlan
) -> list[Pairing | QuarantineRecord]:
    """Pairings and records of one patient; an unexpected error quarantines that patient's SEGs."""
    headers = sorted(headers, key=lambda h: h.url)
    stage_progress.mark_paired(plan.progress_dir, patient_id)
    try:
        pairings, records = pair_patient(headers, plan.config)
    except Exception as exc:
        return [
            h.quarantine(
                Reason.INTERNAL_ERROR.value,
                f"pairing failed for patient {patient_id!r}: {type(exc).__name__}: {exc}",
                "pair",
                details=(("traceback", _short_traceback(exc)),),
            )
            for h in headers
            if h.is_seg
        ]
    pseudo = _pseudonymizer(plan.config.pseudonymize_key)
    if pseudo is not None:  # headers carry pseudonyms already; only the URLs remain
        records = [pseudo.scrub_urls(r, [h.url for h in headers]) for r in records]
    return [*pairings, *records]


@dataclass(frozen=True)
class CaseKey:
    """Identity of a case across runs: what resume and the manifest key on (with the config hash)."""

    seg_sop_instance_uid: str
    ct_series_instance_uid: str
    ct_acquisition_number: int | None
    case_id: str
    """``make_case_id(patient_id, seg_sop_instance_uid)``: the case directory name."""

    def sort_key(self) -> tuple[str, str, str, int]:
        acq = self.ct_acquisition_number
        return (
            self.case_id,
            self.seg_sop_instance_uid,
            self.ct_series_instance_uid,
            -1 if acq is None else acq,
        )


def case_key(pairing: Pairing) -> CaseKey:
    return CaseKey(
        seg_sop_instance_uid=pairing.seg.sop_instance_uid,
        ct_series_instance_uid=pairing.ct_series_instance_uid,
        ct_acquisition_number=pairing.acquisition_number,
        case_id=make_case_id(provenance_of(pairing).patient_id, pairing.seg.sop_instance_uid),
    )


def case_sort_key(pairing: Pairing) -> tuple[str, str, str, int]:
    return case_key(pairing).sort_key()


def pairing_spacing(pairing: Pairing) -> tuple[float, float, float]:
    return tuple(float(v) for v in pairing.geometry.spacing)  # type: ignore[return-value]


# -- 4. target ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildTarget:
    """What every case of this build is written to: resolved once, shared by all cases."""

    config: BuildConfig
    """The plan's config with the target spacing resolved (None only when there is no case)."""
    version_url: str
    """``OUTPUT/versions/<config_hash>``."""
    cases: int
    """Cases selected for this build (after --limit)."""


def resolve_target(spacings: list[tuple[float, float, float]], plan: BuildPlan) -> BuildTarget:
    """Explicit spacing as given; 'auto' from the spacings of the selected cases (the fingerprint)."""
    config = plan.config
    if config.target_spacing is None and spacings:
        config = config.with_target_spacing(auto_target_spacing(spacings, config.anisotropy_threshold))
    target = BuildTarget(config=config, version_url=version_url(plan.output_url, config), cases=len(spacings))
    if plan.progress_dir:
        _write_local_json(os.path.join(plan.progress_dir, "total.json"), {"cases": target.cases})
    return target


def attach_target(items: Iterable[Pairing | BuildTarget]) -> list[tuple[Pairing, BuildTarget]]:
    """Pair every pairing with the one target among ``items`` (the grouped join of BuildCases)."""
    items = list(items)
    targets = [i for i in items if isinstance(i, BuildTarget)]
    if len(targets) != 1:
        raise ValueError(f"expected exactly one BuildTarget among the grouped items, got {len(targets)}")
    return [(i, targets[0]) for i in items if not isinstance(i, BuildTarget)]


# -- 5. cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One result on its way to the commit step; exactly the fields its ``kind`` uses are set."""

    kind: Literal["start", "case", "quarantine", "index", "target"]
    """start: the one outcome every build has (so the commit runs on an empty input); case: a written
    or resumed case; quarantine: a record; index: listing totals; target: the resolved target."""
    row: ManifestRow | None = None
    """kind=case: the manifest row."""
    record: QuarantineRecord | None = None
    """kind=quarantine: the record."""
    resumed: bool = False
    """kind=case: the case was already complete and was not rewritten."""
    bytes_read: int = 0
    """Bytes read from the input for this outcome."""
    bytes_written: int = 0
    """Bytes written to the output for this outcome."""
    seconds: float = 0.0
    """Worker time spent on this outcome."""
    index: IndexStats | None = None
    """kind=index: listing and header totals."""
    target: BuildTarget | None = None
    """kind=target: the resolved target."""
    hu_histogram: tuple[tuple[int, int], ...] = ()
    """kind=case: (HU, voxels) over the case's labelled voxels (hcc_shards.shards.intensity)."""


def start_outcome(_: object = None) -> Outcome:
    return Outcome(kind="start")


def quarantine_outcome(record: QuarantineRecord) -> Outcome:
    return Outcome(kind="quarantine", record=record)


def index_outcome(stats: IndexStats) -> Outcome:
    return Outcome(kind="index", index=stats, bytes_read=stats.bytes_read)


def target_outcome(target: BuildTarget) -> Outcome:
    return Outcome(kind="target", target=target)


def build_case(pairing: Pairing, target: BuildTarget, plan: BuildPlan) -> Outcome:
    """Decode, resample and write one case (skipped when already complete); never raises."""
    key = case_key(pairing)
    config = target.config
    start = time.monotonic()
    stage = "resume"
    try:
        done = _with_retries(
            lambda: read_complete_case(target.version_url, key.case_id, config, plan.output_storage_options)
        )
        if done is not None:
            hist = _with_retries(
                lambda: stored_histogram(target.version_url, done.path, plan.output_storage_options)
            )
            outcome = Outcome(
                kind="case", row=done, resumed=True, seconds=time.monotonic() - start, hu_histogram=hist
            )
        else:
            stage = "decode"
            case = _with_retries(lambda: decode_pairing(pairing, config, plan.input_storage_options))
            stage = "resample"
            case = resample_case(case, config.target_spacing, config)
            stage = "write"
            split = split_for_patient(case.provenance.patient_id, config.seed, config.split_fractions)
            row = _with_retries(
                lambda: write_case(case, target.version_url, config, plan.output_storage_options, split=split)
            )
            outcome = Outcome(
                kind="case",
                row=row,
                bytes_read=pairing_bytes(pairing),
                bytes_written=_written_bytes(target.version_url, key.case_id, plan.output_storage_options),
                seconds=time.monotonic() - start,
                hu_histogram=foreground_histogram(case.image, case.label),
            )
    except QuarantineError as exc:
        outcome = quarantine_outcome(_with_key(record_for(pairing, exc, stage), key))
    except Exception as exc:
        _LOG.warning("case %s failed at %s: %s: %s", key.case_id, stage, type(exc).__name__, exc)
        err = QuarantineError(_reason_of(exc).value, f"{stage} failed: {type(exc).__name__}: {exc}")
        record = record_for(pairing, err, stage)
        record = replace(record, details=(("traceback", _short_traceback(exc)),))
        outcome = quarantine_outcome(_with_key(record, key))
    pseudo = _pseudonymizer(plan.config.pseudonymize_key)
    if pseudo is not None and outcome.record is not None:
        urls = [pairing.seg.url, *(h.url for h in pairing.ct_headers)]
        outcome = replace(outcome, record=pseudo.scrub_urls(outcome.record, urls))
    if plan.progress_dir:
        _touch(os.path.join(plan.progress_dir, "done", key.case_id))
    return outcome


def pairing_bytes(pairing: Pairing) -> int:
    """Bytes a case reads in full: its CT instances and its SEG."""
    return int(sum(h.file_size for h in pairing.ct_headers) + pairing.seg.file_size)


def _written_bytes(vurl: str, case_id: str, storage_options: dict[str, Any]) -> int:
    fs, path = storage.filesystem(storage.join(vurl, case_path(case_id)), storage_options)
    total = sum(int(info.get("size") or 0) for info in fs.find(path, detail=True).values())
    fs_qc, qc = storage.filesystem(storage.join(vurl, "qc", f"{case_id}.png"), storage_options)
    with contextlib.suppress(FileNotFoundError):
        total += int(fs_qc.size(qc))
    return total


def _with_key(record: QuarantineRecord, key: CaseKey) -> QuarantineRecord:
    extra = {
        "case_id": key.case_id,
        "ct_series_instance_uid": key.ct_series_instance_uid,
        "ct_acquisition_number": "" if key.ct_acquisition_number is None else str(key.ct_acquisition_number),
    }
    merged = {**extra, **dict(record.details)}
    return replace(record, details=tuple(sorted(merged.items())))


# -- 6. commit ---------------------------------------------------------------------------


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

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["quarantined_by_reason"] = dict(self.quarantined_by_reason)
        d["target_spacing_zyx"] = list(self.target_spacing_zyx) if self.target_spacing_zyx else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        d = dict(data)
        d["quarantined_by_reason"] = tuple(
            sorted((str(k), int(v)) for k, v in d["quarantined_by_reason"].items())
        )
        ts = d.get("target_spacing_zyx")
        d["target_spacing_zyx"] = tuple(ts) if ts else None
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
    hu_histogram: tuple[tuple[int, int], ...] = ()


def gather(outcomes: Iterable[Outcome], plan: BuildPlan) -> _Gathered:
    """Sort outcomes into rows, records and totals; rows by case_id, records by their sort key."""
    rows: dict[str, ManifestRow] = {}
    records: list[QuarantineRecord] = []
    target: BuildTarget | None = None
    index = IndexStats()
    written = resumed = bytes_read = bytes_written = 0
    histograms = []
    for o in outcomes:
        bytes_read += o.bytes_read
        bytes_written += o.bytes_written
        if o.kind == "case" and o.row is not None:
            rows[o.row.case_id] = o.row
            histograms.append(o.hu_histogram)
            resumed += int(o.resumed)
            written += int(not o.resumed)
        elif o.kind == "quarantine" and o.record is not None:
            records.append(o.record)
        elif o.kind == "index" and o.index is not None:
            index = add_index_stats([index, o.index])
        elif o.kind == "target" and o.target is not None:
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
        hu_histogram=merge_histograms(histograms),
    )


def commit_outcomes(outcomes: Iterable[Outcome], plan: BuildPlan) -> Summary:
    """The terminal step: summary from the outcomes, then one commit (skipped when nothing changed)."""
    stage_progress.mark_commit(plan.progress_dir)
    g = gather(outcomes, plan)
    config = g.target.config
    unchanged = _already_committed(g.target.version_url, g.rows, g.records, plan.output_storage_options)
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
    )
    if not unchanged:
        commit_dataset(
            plan.output_url,
            g.rows,
            g.records,
            config,
            summary.to_dict(),
            plan.output_storage_options,
            source=_source_of(plan),
            intensity=intensity_properties(g.hu_histogram),
        )
    if plan.progress_dir:
        _write_local_json(os.path.join(plan.progress_dir, "summary.json"), summary.to_dict())
    return summary


def _source_of(plan: BuildPlan) -> dict[str, Any]:
    """Where the DICOM came from, for dataset.json and the card (no input URL when pseudonymizing:
    folder names may carry identifiers)."""
    source = input_source(plan.input_url)
    return {"kind": source["kind"]} if plan.config.pseudonymize_key else source


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


# -- helpers -----------------------------------------------------------------------------


def _with_retries(fn: Callable[[], T], attempts: int = CASE_ATTEMPTS, delay_s: float = 0.5) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TRANSIENT_ERRORS:
            if attempt == attempts:
                raise
            time.sleep(delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover


@functools.lru_cache(maxsize=4)
def _pseudonymizer(key: str) -> Pseudonymizer | None:
    return Pseudonymizer(key) if key else None


def _reason_of(exc: BaseException) -> Reason:
    if isinstance(exc, PERMANENT_STORAGE_ERRORS + TRANSIENT_ERRORS):
        return Reason.STORAGE_ERROR
    return Reason.INTERNAL_ERROR


def _short_traceback(exc: BaseException, limit: int = 6) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-limit))[-2000:]


def _touch(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a"):
        pass


def _write_local_json(path: str, obj: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, sort_keys=True)
    os.replace(tmp, path)


def progress(progress_dir: str) -> tuple[int, int | None]:
    """(cases done, cases total or None while unknown) from a progress directory."""
    done_dir = os.path.join(progress_dir, "done")
    done = len(os.listdir(done_dir)) if os.path.isdir(done_dir) else 0
    try:
        with open(os.path.join(progress_dir, "total.json")) as f:
            total = int(json.load(f)["cases"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        total = None
    return done, total


__all__ = [
    "BuildTarget",
    "CaseKey",
    "FileRef",
    "IndexStats",
    "ListingTask",
    "Outcome",
    "Summary",
    "add_index_stats",
    "build_case",
    "case_key",
    "commit_outcomes",
    "index_one",
    "index_stats",
    "list_files",
    "listing_tasks",
    "pair_one_patient",
    "progress",
    "resolve_target",
]

"""The build's steps as plain functions (no Beam): what each pipeline transform calls.

Order of operations (docs/FORMAT.md), with the function that does each step:

1. :func:`listing_tasks` / :func:`list_files`: list every object under the input's prefixes, in
   parallel: one prefix is split by the hash of its top-level names, many prefixes (a list of
   series) are dealt out to the tasks.
2. :func:`index_one`: read one file's header (a few KiB), or a quarantine record.
3. :func:`pair_one_patient`: all headers of one PatientID -> pairings and quarantine records.
4. :func:`resolve_target`: the target spacing (explicit, or 'auto' from the selected pairings),
   hence the config hash and the version URL.
5. :func:`build_image`: the annotations of one CT image (pairings grouped by
   :func:`image_group_key`): the CT decoded and resampled once, each SEG's labels decoded and
   resampled, all written as one image, or skipped when its completion marker already exists
   (resume). Every failure is caught here and becomes a quarantine record with the case key.
   (:func:`build_case` is the same for one pairing.)
6. :func:`commit_outcomes`: one terminal step gathers every outcome, computes the summary from
   them, and commits manifest, quarantine table, card and dataset.json.

Progress reports go to a local directory (``BuildPlan.progress_dir``), never to the output.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
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
from hcc_shards.case import Case, make_case_id
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import annotation_of, decode_image_group, image_id_of, provenance_of, record_for
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import Pairing, pair_patient
from hcc_shards.dicom.plan import missing_objects
from hcc_shards.errors import QuarantineError
from hcc_shards.features import SETTINGS as FEATURE_SETTINGS
from hcc_shards.features import FeatureRow, case_features, features_table, rows_of_table
from hcc_shards.idc import IdcSeries
from hcc_shards.preflight import drop_datasets
from hcc_shards.pseudonymize import Pseudonymizer
from hcc_shards.quarantine import QuarantineRecord, Reason
from hcc_shards.resample import check_target_size, resample_cases
from hcc_shards.shards import (
    ManifestRow,
    auto_target_spacing,
    commit_dataset,
    split_for_patient,
    version_url,
)
from hcc_shards.shards.atomic import put_bytes_atomic
from hcc_shards.shards.card_facts import input_source
from hcc_shards.shards.commit import quarantine_table
from hcc_shards.shards.intensity import foreground_histogram, intensity_properties, merge_histograms
from hcc_shards.shards.manifest import rows_to_table
from hcc_shards.shards.research import prepare_research
from hcc_shards.shards.research import unchanged as research_unchanged
from hcc_shards.shards.writer import image_path, read_complete_image, stored_histogram, write_image
from hcc_shards.text import shown
from pipelines import progress as stage_progress
from pipelines.options import BuildPlan, indexed_inputs, resolve_inputs

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
    exclude: tuple[str, ...] = ()
    """Prefixes never listed: the build's own OUTPUT (when it lies inside INPUT)."""
    from_index: tuple[tuple[str, IdcSeries], ...] = ()
    """(root, index row) of this task's roots that the IDC index named (``idc://``): such a root
    without objects becomes a ``missing_objects`` record."""


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
    indexed = indexed_inputs(plan.input_url)

    def named(mine: tuple[str, ...]) -> tuple[tuple[str, IdcSeries], ...]:
        return tuple((r, indexed[r]) for r in mine if r in indexed)

    n = plan.listing_shards
    out = plan.output_url
    own = (os.path.abspath(out.removeprefix("file://")) if storage.protocol_of(out) == "file" else out,)
    if len(roots) < n:
        return [ListingTask(roots, i, n, split=True, exclude=own, from_index=named(roots)) for i in range(n)]
    return [ListingTask(roots[i::n], i, n, exclude=own, from_index=named(roots[i::n])) for i in range(n)]


def shard_of(name: str, shards: int) -> int:
    """Stable owner of a top-level entry (same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha1(name_bytes(name)).digest()[:4], "big") % shards


def name_bytes(name: str) -> bytes:
    """A file name or URL as bytes; names that were not valid UTF-8 on disk (decoded by Python with
    ``surrogateescape``) give back their original bytes instead of raising."""
    return name.encode("utf-8", "surrogateescape")


def url_key(url: str) -> str:
    """A short ASCII key for a URL (spreading, progress files): any name gives one, whatever its bytes."""
    return hashlib.sha1(name_bytes(url)).hexdigest()


def list_files(task: ListingTask, storage_options: dict[str, Any]) -> list[FileRef | QuarantineRecord]:
    """Every object this task owns under its roots, sorted by URL, each once.

    A root that is neither an object nor a prefix with objects under it (nor an existing local
    folder) is an error that names it: a typo in INPUT or in a list file fails the build in this
    first stage, before any header is read. A root that an index named (``idc://``) is not the
    user's typo: it becomes a ``missing_objects`` record (from the one task that owns its name)
    and the build goes on.
    """
    refs: dict[str, FileRef] = {}
    missing: list[str] = []
    records: list[QuarantineRecord] = []
    named = dict(task.from_index)
    for root in task.roots:
        found = _list_root(root, task, storage_options)
        if found is not None:
            refs.update((r.url, r) for r in found)
        elif root not in named:
            missing.append(root)
        elif not task.split or shard_of(root.rsplit("/", 1)[-1], task.shards) == task.shard:
            records.append(missing_objects(named[root], root))
    if missing:
        names = ", ".join(repr(m) for m in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(
            f"input {names}{more} does not exist or cannot be listed (no object at or under it)"
        )
    kept = set(drop_datasets(sorted(refs)))
    own = [storage.join(o, "") + "/" for o in task.exclude]
    listed = sorted(
        (r for u, r in refs.items() if u in kept and not any(u.startswith(o) for o in own)),
        key=lambda r: r.url,
    )
    return [*listed, *records]


def list_task(task: ListingTask, plan: BuildPlan) -> list[FileRef | QuarantineRecord]:
    """:func:`list_files` for one task of ``plan``, reported to its progress directory."""
    refs = list_files(task, plan.input_storage_options)
    stage_progress.mark_listed(plan.progress_dir, task.shard, sum(isinstance(r, FileRef) for r in refs))
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


def index_one(ref: FileRef | QuarantineRecord, plan: BuildPlan) -> InstanceHeader | QuarantineRecord:
    """The header of one file, or why not; unexpected errors become ``internal_error`` records.

    A record from the listing (``missing_objects``) passes through. With a pseudonymization key,
    identifiers are replaced here, before anything else sees them.
    """
    if isinstance(ref, QuarantineRecord):
        pseudo = _pseudonymizer(plan.config.pseudonymize_key)
        return ref if pseudo is None else pseudo.record(ref, [ref.url])
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
    if item.stage == "list":  # a series with no object: nothing was listed
        return IndexStats()
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
    return [*selected_by_source(pairings, plan.config), *records]


def selected_by_source(pairings: Iterable[Pairing], config: BuildConfig) -> list[Pairing]:
    """The pairings whose annotation source is among ``config.annotation_sources`` (the others are
    left out of this build, not quarantined: another selection builds them)."""
    wanted = set(config.annotation_sources)
    return [p for p in pairings if annotation_of(p, config).source in wanted]


def image_group_key(pairing: Pairing) -> str:
    """The stored image a pairing labels: pairings with one key are built together (:func:`build_image`)."""
    return image_id_of(pairing)


@dataclass(frozen=True)
class CaseKey:
    """Identity of a case across runs: what resume and the manifest key on (with the config hash)."""

    seg_sop_instance_uid: str
    ct_series_instance_uid: str
    ct_acquisition_number: int | None
    case_id: str
    """``make_case_id(patient_id, SEG, CT series, acquisition)``: the case directory name."""

    def sort_key(self) -> tuple[str, str, str, int]:
        acq = self.ct_acquisition_number
        return (
            self.case_id,
            self.seg_sop_instance_uid,
            self.ct_series_instance_uid,
            -1 if acq is None else acq,
        )


def case_key(pairing: Pairing) -> CaseKey:
    prov = provenance_of(pairing)
    return CaseKey(
        seg_sop_instance_uid=pairing.seg.sop_instance_uid,
        ct_series_instance_uid=pairing.ct_series_instance_uid,
        ct_acquisition_number=pairing.acquisition_number,
        case_id=make_case_id(
            prov.patient_id,
            prov.seg_sop_instance_uid,
            prov.ct_series_instance_uid,
            prov.ct_acquisition_number,
        ),
    )


def case_sort_key(pairing: Pairing) -> tuple[str, str, str, int]:
    return case_key(pairing).sort_key()


def case_id_of(pairing: Pairing) -> str:
    return case_key(pairing).case_id


def unique_case(
    case_id: str, pairings: Iterable[Pairing], plan: BuildPlan | None = None
) -> list[Pairing | QuarantineRecord]:
    """The pairings of one case id: the first by (SEG URL, CT series) is kept, every other one becomes
    a ``case_id_collision`` record (two inputs are never written to, or merged into, one case)."""
    ordered = sorted(pairings, key=lambda p: (name_bytes(p.seg.url), p.ct_series_instance_uid))
    out: list[Pairing | QuarantineRecord] = [ordered[0]]
    for other in ordered[1:]:
        record = other.seg.quarantine(
            Reason.CASE_ID_COLLISION.value,
            f"case id {case_id} is already taken by the SEG at {ordered[0].seg.url!r}; expected one input "
            "per case id (the first by SEG URL is kept, this one is set aside)",
            "pair",
        )
        record = _with_key(record, case_key(other))
        pseudo = _pseudonymizer(plan.config.pseudonymize_key) if plan is not None else None
        if pseudo is not None:
            record = pseudo.scrub_urls(record, [ordered[0].seg.url])
        out.append(record)
    return out


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
    features: tuple[FeatureRow, ...] = ()
    """kind=case with BuildConfig.features: the case's radiomics features."""
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
    """One pairing as the only annotation of its image (:func:`build_image`); never raises."""
    return build_image([pairing], target, plan)[0]


def build_image(pairings: Iterable[Pairing], target: BuildTarget, plan: BuildPlan) -> list[Outcome]:
    """Decode, resample and write the annotations of one image (skipped when already complete).

    The CT is decoded and resampled once, each SEG's labels once. Never raises: one outcome per
    pairing, a case or a quarantine record. A SEG that fails alone is a record and the others are
    written; a CT that fails fails every annotation of the image.
    """
    pairings = sorted(pairings, key=case_sort_key)
    keys = {p.seg.sop_instance_uid: case_key(p) for p in pairings}
    image_id = image_group_key(pairings[0])
    config = target.config
    start = time.monotonic()
    stage = "resume"
    try:
        done = _with_retries(
            lambda: read_complete_image(target.version_url, image_id, config, plan.output_storage_options)
        )
        if done is not None:
            by_id = {p.seg.sop_instance_uid: p for p in pairings}
            for k in keys.values():
                row = done.get(k.case_id)
                if row is not None and not _same_identity(row, k, by_id[k.seg_sop_instance_uid]):
                    raise QuarantineError(
                        Reason.CASE_ID_COLLISION.value,
                        f"case {k.case_id} already holds SEG {row.seg_sop_instance_uid} of patient "
                        f"{shown(row.patient_id)!r} on CT series {row.ct_series_instance_uid}; this input is "
                        "another one and is not merged into it",
                    )
        if done is not None and set(done) == {k.case_id for k in keys.values()}:
            seconds = (time.monotonic() - start) / len(pairings)
            outcomes = [
                Outcome(
                    kind="case", row=done[keys[p.seg.sop_instance_uid].case_id], resumed=True, seconds=seconds
                )
                for p in pairings
            ]
            if config.features:
                outcomes = [
                    replace(o, features=read_case_features(target.version_url, o.row.case_id, plan))
                    for o in outcomes
                ]
            outcomes = [
                replace(
                    o,
                    hu_histogram=_with_retries(
                        lambda r=o.row: stored_histogram(target.version_url, r, plan.output_storage_options)
                    ),
                )
                for o in outcomes
            ]
        else:
            stage = "resample"
            check_target_size(pairings[0].geometry, config.target_spacing, config)
            stage = "decode"
            results = _with_retries(lambda: decode_image_group(pairings, config, plan.input_storage_options))
            cases = [r for r in results if isinstance(r, Case)]
            stage = "resample"
            cases = resample_cases(cases, config.target_spacing, config)
            feats: dict[str, tuple[FeatureRow, ...]] = {}
            if config.features:
                stage = "features"
                for case in cases:
                    feats[case.case_id] = case_features(
                        case.case_id,
                        case.provenance.patient_id,
                        case.image,
                        case.label,
                        case.geometry.spacing,
                    )
                    _with_retries(
                        lambda c=case: write_case_features(
                            target.version_url, c.case_id, feats[c.case_id], plan
                        )
                    )
            stage = "write"
            rows = []
            if cases:
                split = split_for_patient(cases[0].provenance.patient_id, config.seed, config.split_fractions)
                rows = _with_retries(
                    lambda: write_image(
                        cases, target.version_url, config, plan.output_storage_options, split=split
                    )
                )
            for case in cases:
                if case.annotation.source == "unknown":
                    _LOG.warning(
                        "case %s: annotation source unknown (%s); kept as 'unknown', never as manual",
                        case.case_id,
                        shown(case.annotation.source_reason),
                    )
            outcomes = _image_outcomes(pairings, results, rows, keys)
            seconds = (time.monotonic() - start) / len(pairings)
            hists = {c.case_id: foreground_histogram(c.image, c.label) for c in cases}
            outcomes = [
                replace(
                    o,
                    seconds=seconds,
                    features=feats.get(o.row.case_id, ()) if o.row else (),
                    hu_histogram=hists.get(o.row.case_id, ()) if o.row else (),
                )
                for o in outcomes
            ]
            if rows:  # the image's bytes once, on its first written annotation
                first = next(i for i, o in enumerate(outcomes) if o.kind == "case")
                outcomes[first] = replace(
                    outcomes[first],
                    bytes_read=image_bytes(pairings),
                    bytes_written=_written_bytes(
                        target.version_url, image_id, [r.case_id for r in rows], plan.output_storage_options
                    ),
                )
    except QuarantineError as exc:
        outcomes = [
            quarantine_outcome(_with_key(record_for(p, exc, stage), keys[p.seg.sop_instance_uid]))
            for p in pairings
        ]
    except Exception as exc:
        _LOG.warning("image %s failed at %s: %s: %s", image_id, stage, type(exc).__name__, shown(exc))
        err = QuarantineError(_reason_of(exc).value, f"{stage} failed: {type(exc).__name__}: {exc}")
        outcomes = []
        for p in pairings:
            record = replace(record_for(p, err, stage), details=(("traceback", _short_traceback(exc)),))
            outcomes.append(quarantine_outcome(_with_key(record, keys[p.seg.sop_instance_uid])))
    pseudo = _pseudonymizer(plan.config.pseudonymize_key)
    if pseudo is not None:
        urls = [*(p.seg.url for p in pairings), *(h.url for h in pairings[0].ct_headers)]
        outcomes = [
            replace(o, record=pseudo.scrub_urls(o.record, urls)) if o.record is not None else o
            for o in outcomes
        ]
    if plan.progress_dir:
        for k in keys.values():
            _touch(os.path.join(plan.progress_dir, "done", url_key(k.case_id)))
    return outcomes


def _image_outcomes(
    pairings: list[Pairing],
    results: list[Case | QuarantineRecord],
    rows: list[ManifestRow],
    keys: dict[str, CaseKey],
) -> list[Outcome]:
    by_case = {r.case_id: r for r in rows}
    out = []
    for pairing, result in zip(pairings, results, strict=True):
        key = keys[pairing.seg.sop_instance_uid]
        if isinstance(result, QuarantineRecord):
            out.append(quarantine_outcome(_with_key(result, key)))
        else:
            out.append(Outcome(kind="case", row=by_case[key.case_id]))
    return out


def image_bytes(pairings: list[Pairing]) -> int:
    """Bytes an image reads in full: its CT instances once, and every SEG."""
    return int(sum(h.file_size for h in pairings[0].ct_headers) + sum(p.seg.file_size for p in pairings))


def _same_identity(row: ManifestRow, key: CaseKey, pairing: Pairing) -> bool:
    """Whether a complete case found on disk is the one ``pairing`` would write."""
    return (
        row.seg_sop_instance_uid,
        row.ct_series_instance_uid,
        row.ct_acquisition_number,
        row.patient_id,
    ) == (
        key.seg_sop_instance_uid,
        key.ct_series_instance_uid,
        key.ct_acquisition_number,
        provenance_of(pairing).patient_id,
    )


def features_url(vurl: str, case_id: str) -> str:
    """Per-case features, written before the case's marker so a resumed case keeps them."""
    return storage.join(vurl, "features", f"{case_id}.parquet")


def write_case_features(vurl: str, case_id: str, rows: tuple[FeatureRow, ...], plan: BuildPlan) -> None:
    buf = io.BytesIO()
    pq.write_table(features_table(rows), buf, compression="zstd")
    put_bytes_atomic(features_url(vurl, case_id), buf.getvalue(), plan.output_storage_options)


def read_case_features(vurl: str, case_id: str, plan: BuildPlan) -> tuple[FeatureRow, ...]:
    fs, path = storage.filesystem(features_url(vurl, case_id), plan.output_storage_options)
    with fs.open(path, "rb") as f:
        return rows_of_table(pq.read_table(f))


def pairing_bytes(pairing: Pairing) -> int:
    """Bytes a case reads in full: its CT instances and its SEG."""
    return int(sum(h.file_size for h in pairing.ct_headers) + pairing.seg.file_size)


def _written_bytes(vurl: str, image_id: str, case_ids: list[str], storage_options: dict[str, Any]) -> int:
    fs, path = storage.filesystem(storage.join(vurl, image_path(image_id)), storage_options)
    total = sum(int(info.get("size") or 0) for info in fs.find(path, detail=True).values())
    for case_id in case_ids:
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
        bytes_read += o.bytes_read
        bytes_written += o.bytes_written
        if o.kind == "case" and o.row is not None:
            rows[o.row.case_id] = o.row
            features[o.row.case_id] = o.features
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
        features=tuple(f for k in sorted(features) for f in features[k]),
        hu_histogram=merge_histograms(histograms),
    )


def commit_outcomes(outcomes: Iterable[Outcome], plan: BuildPlan) -> Summary:
    """The terminal step: summary from the outcomes, then one commit (skipped when nothing changed)."""
    stage_progress.mark_commit(plan.progress_dir)
    g = gather(outcomes, plan)
    config = g.target.config
    pseudo = _pseudonymizer(plan.config.pseudonymize_key)
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
        _write_local_json(os.path.join(plan.progress_dir, "summary.json"), summary.to_dict())
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
    "build_image",
    "case_id_of",
    "case_key",
    "commit_outcomes",
    "image_group_key",
    "index_one",
    "index_stats",
    "list_files",
    "listing_tasks",
    "pair_one_patient",
    "progress",
    "resolve_target",
    "unique_case",
    "url_key",
]

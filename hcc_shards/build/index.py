"""Header index: one file's header (a few KiB), or a quarantine record; pseudonymized here, once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hcc_shards.build import progress
from hcc_shards.build.failures import pseudonymizer, reason_of, short_traceback, with_retries
from hcc_shards.build.listing import FileRef
from hcc_shards.build.plan import BuildPlan
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.quarantine import QuarantineRecord


def index_one(ref: FileRef | QuarantineRecord, plan: BuildPlan) -> InstanceHeader | QuarantineRecord:
    """The header of one file, or why not; unexpected errors become ``internal_error`` records.

    A record from the listing (``missing_objects``) passes through. With a pseudonymization key,
    identifiers are replaced here, before anything else sees them.
    """
    if isinstance(ref, QuarantineRecord):
        pseudo = pseudonymizer(plan.config.pseudonymize_key)
        return ref if pseudo is None else pseudo.record(ref, [ref.url])
    try:
        result = with_retries(lambda: index_file(ref.url, plan.input_storage_options, plan.config))
    except Exception as exc:
        result = QuarantineRecord(
            code=reason_of(exc).value,
            message=f"indexing failed: {type(exc).__name__}: {exc}",
            stage="index",
            url=ref.url,
            details=(("traceback", short_traceback(exc)),),
        )
    progress.mark_indexed(plan.progress_dir)
    pseudo = pseudonymizer(plan.config.pseudonymize_key)
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
    patients: frozenset[str] = frozenset()
    """PatientIDs with a usable header (pseudonyms under --pseudonymize)."""
    seg_patients: frozenset[str] = frozenset()
    """PatientIDs with a SEG among them."""
    ct_series: frozenset[str] = frozenset()
    """SeriesInstanceUIDs of the CT headers: what a count of CT series no case uses starts from."""


def index_stats(item: InstanceHeader | QuarantineRecord) -> IndexStats:
    if isinstance(item, InstanceHeader):
        return IndexStats(
            files=1,
            headers=1,
            bytes_read=int(item.bytes_read),
            patients=frozenset({item.patient_id}),
            seg_patients=frozenset({item.patient_id}) if item.is_seg else frozenset(),
            ct_series=frozenset() if item.is_seg else frozenset({item.series_instance_uid}),
        )
    if item.stage == "list":  # a series with no object: nothing was listed
        return IndexStats()
    return IndexStats(files=1)


def add_index_stats(parts: Iterable[IndexStats]) -> IndexStats:
    """Associative, commutative sum (a CombineGlobally function)."""
    files = headers = read = 0
    patients: set[str] = set()
    seg_patients: set[str] = set()
    ct_series: set[str] = set()
    for p in parts:
        files, headers, read = files + p.files, headers + p.headers, read + p.bytes_read
        patients |= p.patients
        seg_patients |= p.seg_patients
        ct_series |= p.ct_series
    return IndexStats(
        files=files,
        headers=headers,
        bytes_read=read,
        patients=frozenset(patients),
        seg_patients=frozenset(seg_patients),
        ct_series=frozenset(ct_series),
    )

"""Listing: INPUT's prefixes shared out to parallel tasks, each giving the objects it owns.

One prefix is split by the hash of its top-level names, many prefixes (a list of series) are dealt
out to the tasks. Every task sees the same listing, so every object has exactly one owner.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from hcc_shards import idc, storage
from hcc_shards.build import progress
from hcc_shards.build.inputs import indexed_inputs, resolve_inputs
from hcc_shards.build.plan import BuildPlan
from hcc_shards.idc import IdcSeries
from hcc_shards.preflight import drop_datasets
from hcc_shards.quarantine import QuarantineRecord, Reason


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
    """The listing tasks of a build (:func:`hcc_shards.build.inputs.resolve_inputs` gives the roots).

    Reads INPUT's ``@`` list files and checks that local entries exist; nothing else, so the
    construction of a pipeline over prefixes stays offline.
    """
    roots = resolve_inputs(plan.input_url, plan.input_storage_options)
    indexed = indexed_inputs(plan.input_url)

    def named(mine: tuple[str, ...]) -> tuple[tuple[str, IdcSeries], ...]:
        return tuple((r, indexed[r]) for r in mine if r in indexed)

    n = plan.listing_shards
    out = plan.output_url
    own: tuple[str, ...] = ()
    if out:  # a dry run has no output
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
    progress.mark_listed(plan.progress_dir, task.shard, sum(isinstance(r, FileRef) for r in refs))
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


def missing_objects(series: idc.IdcSeries, root: str) -> QuarantineRecord:
    """The record of a series the IDC index names at ``root`` when no object is there."""
    return QuarantineRecord(
        code=Reason.MISSING_OBJECTS.value,
        message=f"the IDC index names series {series.series_instance_uid} at {root}/, but no object is "
        "there (expected its instances; is the mirror incomplete or the index newer than the bucket?)",
        stage="list",
        url=root,
        patient_id=series.patient_id,
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
    )


def list_input(input_url: str, storage_options: dict[str, Any] | None = None) -> list[FileRef]:
    """Every object of INPUT, listed as one task (what the parallel tasks list together), by URL."""
    storage_options = storage_options or {}
    task = ListingTask(resolve_inputs(input_url, storage_options), shard=0, shards=1)
    return [r for r in list_files(task, storage_options) if isinstance(r, FileRef)]

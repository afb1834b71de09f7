"""What every engine's launcher does around its run: a local progress folder and its view, the
preflight checks of INPUT and OUTPUT, the summary, and how it is printed."""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace

from hcc_shards import idc, storage
from hcc_shards.build import progress as build_progress
from hcc_shards.build.commit import Summary
from hcc_shards.build.inputs import (
    INPUT_LIST_MARK,
    clean_input_entry,
    indexed_inputs,
    input_entries,
    resolve_inputs,
)
from hcc_shards.build.plan import BuildPlan
from hcc_shards.errors import EmptyBuildError
from hcc_shards.format import DATASET_FILE
from hcc_shards.lease import Lease, process_alive
from hcc_shards.preflight import check_input, check_output, check_scheme
from hcc_shards.shards import read_latest
from hcc_shards.shards.atomic import read_json

PROGRESS_PREFIX = "hcc-shards-progress-"
"""Local progress folders are ``<tmp>/hcc-shards-progress-<pid>-<random>``: removed when the run
ends, and by the next run when the process that made one is gone (killed)."""


def launch(
    plan: BuildPlan,
    run: Callable[[BuildPlan], Summary | None],
    *,
    local: bool,
    progress: bool = True,
) -> Summary:
    """Check INPUT and OUTPUT, take OUTPUT's lease (hcc_shards.lease), run ``run(plan)`` (an engine),
    show progress, release the lease, return the summary.

    ``local``: the engine's workers share this machine's disk, so they report progress into a
    folder of it. An engine that hands no summary back (a remote runner) leaves it in the output's
    dataset.json. A build that committed nothing because it had no case raises
    :class:`~hcc_shards.errors.EmptyBuildError`.
    """
    remove_stale_progress_dirs()
    tmp = tempfile.mkdtemp(prefix=f"{PROGRESS_PREFIX}{os.getpid()}-")
    lease = None
    try:
        if local and plan.progress_dir is None:
            plan = replace(plan, progress_dir=tmp)
        preflight(plan)
        if not plan.dry_run:
            lease = Lease(plan.output_url, plan.output_storage_options).acquire(plan.lock_wait_s)
        stop = threading.Event()
        watcher = view = None
        if progress and plan.progress_dir:
            view = build_progress.ProgressView()
            watcher = threading.Thread(
                target=build_progress.watch, args=(lambda: _stages(plan), view, stop), daemon=True
            )
            watcher.start()
        try:
            summary = run(plan)
        finally:
            stop.set()
            if watcher is not None:
                watcher.join(timeout=5)
        if view is not None:
            view.close(_stages(plan))
        summary = summary or summary_of(plan)
    finally:
        if lease is not None:
            lease.release()
        shutil.rmtree(tmp, ignore_errors=True)
    if summary.refused:
        raise EmptyBuildError(summary.refused)
    return summary


ENGINE_LOGGERS = ("apache_beam", "py4j", "pyspark")
"""Loggers of the engines: their start-up notes are shown only with ``-v``."""


def configure_logging(verbose: bool = False) -> None:
    """Our warnings always; the engines' own (worker start-up notes, option parsing) only when ``verbose``.

    The workers of a local Beam runner send their log records to the launcher, which logs them under
    ``apache_beam.runners.portability``: one level on the ``apache_beam`` logger covers both.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ENGINE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)


def remove_stale_progress_dirs(root: str | None = None) -> list[str]:
    """Remove the progress folders whose launcher process no longer runs; return their paths."""
    root = root or tempfile.gettempdir()
    removed = []
    for path in glob.glob(os.path.join(root, f"{PROGRESS_PREFIX}*")):
        pid = os.path.basename(path)[len(PROGRESS_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def preflight(plan: BuildPlan) -> None:
    """INPUT and OUTPUT checked before any work (hcc_shards.preflight): one line and exit code each."""
    # idc:// entries are resolved through the index; a series it names without objects is a
    # missing_objects record of the build, not a mistyped INPUT.
    entries = [
        clean_input_entry(e, "INPUT")
        for e in input_entries(plan.input_url)
        if not e.startswith(INPUT_LIST_MARK) and not idc.is_idc_url(e)
    ]
    indexed = indexed_inputs(plan.input_url)
    if not plan.dry_run:
        check_scheme(plan.output_url, "OUTPUT")
    check_input(entries, plan.input_storage_options)
    roots = resolve_inputs(plan.input_url, plan.input_storage_options)
    check_input([r for r in roots if r not in indexed], plan.input_storage_options)
    if not plan.dry_run:
        check_output(plan.output_url, plan.output_storage_options)


def _stages(plan: BuildPlan) -> list[build_progress.StageCount]:
    return build_progress.read_stages(plan.progress_dir or "", plan.listing_shards)


def summary_of(plan: BuildPlan) -> Summary:
    """The summary the commit step left in the progress directory, else the one in dataset.json
    (on remote runners, a rerun that changed nothing finds the previous run's summary there)."""
    if plan.progress_dir:
        try:
            with open(f"{plan.progress_dir}/summary.json") as f:
                return Summary.from_dict(json.load(f))
        except FileNotFoundError:
            pass
    vurl = read_latest(plan.output_url, plan.output_storage_options)
    data = read_json(storage.join(vurl, DATASET_FILE), plan.output_storage_options) if vurl else None
    if not data or "summary" not in data:
        raise RuntimeError(f"the build finished but left no summary under {plan.output_url}")
    return Summary.from_dict(data["summary"])


def format_summary(summary: Summary) -> str:
    """Human-readable summary lines."""
    reasons = ", ".join(f"{k}: {v}" for k, v in summary.quarantined_by_reason) or "none"
    spacing = "x".join(f"{v:g}" for v in summary.target_spacing_zyx) if summary.target_spacing_zyx else "n/a"
    lines = [
        f"dataset version   {summary.version_url}",
        f"target spacing    {spacing} mm (z, y, x)",
        f"cases             {summary.cases_written} written, {summary.cases_resumed} already complete, "
        f"{summary.cases_total} selected",
        f"quarantined       {summary.quarantined} ({reasons})",
        f"files listed      {summary.files}",
        f"patients          {summary.patients} ({summary.patients_without_seg} with CT but no SEG)",
        f"CT series         {summary.ct_series} ({summary.ct_series_unused} used by no case)",
        f"bytes read        {summary.bytes_read:,}",
        f"bytes written     {summary.bytes_written:,}",
        f"wall time         {summary.wall_seconds:.1f} s ({summary.cases_per_minute:.1f} cases/min)",
        f"committed         {'yes' if summary.committed else 'no (unchanged)'}",
    ]
    lines += research_summary_lines(summary)
    return "\n".join(lines)


def research_summary_lines(summary: Summary) -> list[str]:
    """Summary lines of the splits and the clinical join (problems listed, never hidden)."""
    from hcc_shards.text import shown

    lines = [f"splits            {summary.split_method or 'n/a'}"]
    lines += [f"split problem     {shown(p)}" for p in summary.split_problems]
    if summary.clinical_joined:
        problems = ", ".join(f"{k}: {n}" for k, n in summary.clinical_problems) or "none"
        lines.append(f"clinical          {summary.clinical_joined} patients joined; problems: {problems}")
    return lines

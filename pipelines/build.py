"""The build pipeline: graph construction (:func:`build_pipeline`) and the launcher (:func:`main`).

``python -m pipelines.build --input IN --output OUT [--runner ...] [Beam flags]`` and
``hcc-shards build IN OUT [...]`` both end in :func:`run_build`.

Graph (one terminal step; failures travel as data; docs/RUNNERS.md has the details):

1. ListFiles -> IndexHeaders: headers, and records of files that are not usable DICOM.
2. headers -> PairByPatient -> UniqueCases: pairings, and records of SEGs that cannot be paired
   or whose case id another input already has.
3. pairings -> SelectCases (--limit) -> ResolveTarget: the one BuildTarget (fingerprint).
4. pairings + target (side input, or a grouped join on Dask) -> BuildCases: case outcomes.
5. Flatten(start, index totals, records, target, case outcomes) -> Commit: the summary.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from hcc_shards import idc, storage
from hcc_shards.errors import EmptyBuildError, OperatorError
from hcc_shards.preflight import check_input, check_output, check_scheme
from hcc_shards.shards import read_latest
from hcc_shards.shards.atomic import read_json
from pipelines import progress as build_progress
from pipelines import runners, steps, transforms
from pipelines.options import (
    INPUT_LIST_MARK,
    BuildPlan,
    HccShardsOptions,
    check_flags,
    clean_input_entry,
    indexed_inputs,
    input_entries,
    resolve_inputs,
)

_LOG = logging.getLogger("hcc_shards.build")


def build_pipeline(pipeline: beam.Pipeline, plan: BuildPlan | PipelineOptions | None = None):
    """Add the build's steps to ``pipeline`` and return the terminal PCollection (one Summary).

    ``plan`` defaults to the pipeline's own options. Construction does no I/O beyond reading the
    small --label_map / --build_config files and INPUT's ``@`` list files (and checking that local
    input entries exist), so over prefixes it can run where the data is unreachable (e.g. when
    staging a Dataflow template). A missing local input fails here, before any worker starts;
    remote prefixes are checked by the listing step, where the workers' credentials apply.
    """
    if plan is None:
        plan = pipeline.options
    if isinstance(plan, PipelineOptions):
        plan = BuildPlan.from_options(plan)

    index_results = (
        pipeline
        | "List files" >> transforms.ListFiles(plan)
        | "Index headers" >> transforms.IndexHeaders(plan)
    )
    # Global combines without defaults: Beam injects a default through a side input, which the
    # DaskRunner would evaluate by recomputing the upstream graph. "Start" keeps the commit alive
    # on an input with nothing in it.
    start = pipeline | "Start" >> beam.Create([None]) | "Start outcome" >> beam.Map(steps.start_outcome)
    index_totals = (
        index_results
        | "Index stats" >> beam.Map(steps.index_stats)
        | "Sum index stats" >> beam.CombineGlobally(steps.add_index_stats).without_defaults()
        | "Index outcome" >> beam.Map(steps.index_outcome)
    )
    # Two filters, not one multi-output ParDo: the DaskRunner merges tagged outputs into the main one.
    headers = index_results | "Headers" >> beam.Filter(steps.is_not_record)
    index_records = index_results | "Index records" >> beam.Filter(steps.is_record)
    pair_results = headers | "Pair" >> transforms.PairByPatient(plan)
    paired = pair_results | "Paired" >> beam.Filter(steps.is_not_record)
    pair_records = pair_results | "Pair records" >> beam.Filter(steps.is_record)
    unique = paired | "Unique case ids" >> transforms.UniqueCases(plan)
    pairings = unique | "Pairings" >> beam.Filter(steps.is_not_record)
    collision_records = unique | "Collision records" >> beam.Filter(steps.is_record)
    selected = pairings | "Select cases" >> transforms.SelectCases(plan.limit)
    target = selected | "Resolve target" >> transforms.ResolveTarget(plan)
    cases = selected | "Build cases" >> transforms.BuildCases(plan, target)
    records = (
        (index_records, pair_records, collision_records)
        | "Records" >> beam.Flatten()
        | "Record outcome" >> beam.Map(steps.quarantine_outcome)
    )
    target_data = target | "Target outcome" >> beam.Map(steps.target_outcome)
    return (
        (start, records, index_totals, target_data, cases)
        | "Outcomes" >> beam.Flatten()
        | "Commit" >> transforms.Commit(plan)
    )


def run_build(argv: Sequence[str], *, progress: bool = True) -> steps.Summary:
    """Parse ``argv`` (our flags and Beam's), run the build to the end, return its summary."""
    check_flags(list(argv))
    argv = runners.with_runner_defaults(list(argv))
    options = PipelineOptions(argv)
    if runners.is_local(options):
        runners.quiet_local_credentials()
    remove_stale_progress_dirs()
    tmp = tempfile.mkdtemp(prefix=f"{PROGRESS_PREFIX}{os.getpid()}-")
    try:
        return _run_with_progress(argv, options, tmp, progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


PROGRESS_PREFIX = "hcc-shards-progress-"
"""Local progress folders are ``<tmp>/hcc-shards-progress-<pid>-<random>``: removed when the run
ends, and by the next run when the process that made one is gone (killed)."""


def remove_stale_progress_dirs(root: str | None = None) -> list[str]:
    """Remove the progress folders whose launcher process no longer runs; return their paths."""
    root = root or tempfile.gettempdir()
    removed = []
    for path in glob.glob(os.path.join(root, f"{PROGRESS_PREFIX}*")):
        pid = os.path.basename(path)[len(PROGRESS_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_with_progress(argv: list[str], options: PipelineOptions, tmp: str, progress: bool) -> steps.Summary:
    if runners.reports_progress(options) and options.view_as(HccShardsOptions).progress_dir is None:
        options = PipelineOptions([*argv, f"--progress_dir={tmp}"])
    plan = BuildPlan.from_options(options)
    preflight(plan)
    pipeline = beam.Pipeline(runner=runners.make_runner(options), options=options)
    build_pipeline(pipeline, plan)
    stop = threading.Event()
    watcher = view = None
    if progress and plan.progress_dir:
        view = build_progress.ProgressView()
        watcher = threading.Thread(
            target=build_progress.watch, args=(lambda: _stages(plan), view, stop), daemon=True
        )
        watcher.start()
    try:
        values = runners.run_to_completion(pipeline) or []
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(timeout=5)
    if view is not None:
        view.close(_stages(plan))
    returned = [v for v in values if isinstance(v, steps.Summary)]
    summary = returned[0] if returned else _summary_of(plan)
    if summary.refused:
        raise EmptyBuildError(summary.refused)
    return summary


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
    check_scheme(plan.output_url, "OUTPUT")
    check_input(entries, plan.input_storage_options)
    roots = resolve_inputs(plan.input_url, plan.input_storage_options)
    check_input([r for r in roots if r not in indexed], plan.input_storage_options)
    check_output(plan.output_url, plan.output_storage_options)


def _stages(plan: BuildPlan) -> list[build_progress.StageCount]:
    return build_progress.read_stages(plan.progress_dir or "", plan.listing_shards)


BEAM_LOGGER = "apache_beam"


def configure_logging(verbose: bool = False) -> None:
    """Our warnings always; Beam's own (worker start-up notes, option parsing) only when ``verbose``.

    The workers of a local runner send their log records to the launcher, which logs them under
    ``apache_beam.runners.portability``: one level on the ``apache_beam`` logger covers both.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger(BEAM_LOGGER).setLevel(logging.WARNING if verbose else logging.ERROR)


def _summary_of(plan: BuildPlan) -> steps.Summary:
    """The summary the commit step left in the progress directory, else the one in dataset.json
    (on remote runners, a rerun that changed nothing finds the previous run's summary there)."""
    if plan.progress_dir:
        try:
            with open(f"{plan.progress_dir}/summary.json") as f:
                return steps.Summary.from_dict(json.load(f))
        except FileNotFoundError:
            pass
    vurl = read_latest(plan.output_url, plan.output_storage_options)
    data = read_json(storage.join(vurl, "dataset.json"), plan.output_storage_options) if vurl else None
    if not data or "summary" not in data:
        raise RuntimeError(f"the build finished but left no summary under {plan.output_url}")
    return steps.Summary.from_dict(data["summary"])


def format_summary(summary: steps.Summary) -> str:
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
        f"bytes read        {summary.bytes_read:,}",
        f"bytes written     {summary.bytes_written:,}",
        f"wall time         {summary.wall_seconds:.1f} s ({summary.cases_per_minute:.1f} cases/min)",
        f"committed         {'yes' if summary.committed else 'no (unchanged)'}",
    ]
    lines += research_summary_lines(summary)
    return "\n".join(lines)


def research_summary_lines(summary: steps.Summary) -> list[str]:
    """Summary lines of the splits and the clinical join (problems listed, never hidden)."""
    from hcc_shards.text import shown

    lines = [f"splits            {summary.split_method or 'n/a'}"]
    lines += [f"split problem     {shown(p)}" for p in summary.split_problems]
    if summary.clinical_joined:
        problems = ", ".join(f"{k}: {n}" for k, n in summary.clinical_problems) or "none"
        lines.append(f"clinical          {summary.clinical_joined} patients joined; problems: {problems}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        parser = argparse.ArgumentParser(
            prog="python -m pipelines.build",
            description="Build a hcc-shards dataset. Beam's own flags (--runner, --direct_num_workers, "
            "--dask_client_address, ...) are accepted too; see docs/RUNNERS.md.",
        )
        HccShardsOptions._add_argparse_args(parser)
        parser.print_help()
        return 0
    verbose = "-v" in argv or "--verbose" in argv
    configure_logging(verbose)
    try:
        summary = run_build([a for a in argv if a not in ("-v", "--verbose")])
    except OperatorError as exc:
        print(f"hcc-shards build: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

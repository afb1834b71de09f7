"""The build as a Beam graph: one terminal step, failures travelling as data (docs/RUNNERS.md).

1. ListFiles -> IndexHeaders: headers, and records of files that are not usable DICOM.
2. headers -> PairByPatient -> UniqueCases: pairings, and records of SEGs that cannot be paired
   or whose case id another input already has.
3. pairings -> SelectCases (--limit) -> ResolveTarget: the one BuildTarget (fingerprint).
4. pairings + target (side input, or a grouped join on Dask) -> BuildCases: case outcomes.
5. Flatten(start, index totals, records, target, case outcomes) -> Commit: the summary.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from hcc_shards.build import index, outcomes
from hcc_shards.build.plan import BuildPlan
from pipelines.beam import transforms
from pipelines.beam.options import plan_of


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
        plan = plan_of(plan)

    index_results = (
        pipeline
        | "List files" >> transforms.ListFiles(plan)
        | "Index headers" >> transforms.IndexHeaders(plan)
    )
    # Global combines without defaults: Beam injects a default through a side input, which the
    # DaskRunner would evaluate by recomputing the upstream graph. "Start" keeps the commit alive
    # on an input with nothing in it.
    start = pipeline | "Start" >> beam.Create([None]) | "Start outcome" >> beam.Map(outcomes.start_outcome)
    index_totals = (
        index_results
        | "Index stats" >> beam.Map(index.index_stats)
        | "Sum index stats" >> beam.CombineGlobally(index.add_index_stats).without_defaults()
        | "Index outcome" >> beam.Map(outcomes.index_outcome)
    )
    # Two filters, not one multi-output ParDo: the DaskRunner merges tagged outputs into the main one.
    headers = index_results | "Headers" >> beam.Filter(outcomes.is_not_record)
    index_records = index_results | "Index records" >> beam.Filter(outcomes.is_record)
    pair_results = headers | "Pair" >> transforms.PairByPatient(plan)
    paired = pair_results | "Paired" >> beam.Filter(outcomes.is_not_record)
    pair_records = pair_results | "Pair records" >> beam.Filter(outcomes.is_record)
    unique = paired | "Unique case ids" >> transforms.UniqueCases(plan)
    pairings = unique | "Pairings" >> beam.Filter(outcomes.is_not_record)
    collision_records = unique | "Collision records" >> beam.Filter(outcomes.is_record)
    selected = pairings | "Select cases" >> transforms.SelectCases(plan.limit)
    target = selected | "Resolve target" >> transforms.ResolveTarget(plan)
    cases = selected | "Build cases" >> transforms.BuildCases(plan, target)
    records = (
        (index_records, pair_records, collision_records)
        | "Records" >> beam.Flatten()
        | "Record outcome" >> beam.Map(outcomes.quarantine_outcome)
    )
    target_data = target | "Target outcome" >> beam.Map(outcomes.target_outcome)
    return (
        (start, records, index_totals, target_data, cases)
        | "Outcomes" >> beam.Flatten()
        | "Commit" >> transforms.Commit(plan)
    )

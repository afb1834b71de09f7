"""A build on a Beam runner: runner defaults, the pipeline, and its run to the end."""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from hcc_shards.build.commit import Summary
from hcc_shards.build.launch import launch
from hcc_shards.build.plan import BuildPlan
from pipelines.beam import runners
from pipelines.beam.graph import build_pipeline
from pipelines.beam.options import check_flags, plan_of


def run_build(argv: Sequence[str], *, progress: bool = True) -> Summary:
    """Parse ``argv`` (our flags and Beam's), run the build on its runner to the end, return its summary."""
    check_flags(list(argv))
    argv = runners.with_runner_defaults(list(argv))
    options = PipelineOptions(argv)
    if runners.is_local(options):
        runners.quiet_local_credentials()
    local = runners.reports_progress(options)

    def run(plan: BuildPlan) -> Summary | None:
        pipeline = beam.Pipeline(runner=runners.make_runner(options), options=options)
        build_pipeline(pipeline, plan)
        values = runners.run_to_completion(pipeline) or []
        returned = [v for v in values if isinstance(v, Summary)]
        return returned[0] if returned else None

    return launch(plan_of(options), run, local=local, progress=progress)

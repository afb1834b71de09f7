"""Runner selection and the defaults hcc-shards gives each runner (docs/RUNNERS.md).

- ``DirectRunner`` (default): Beam's FnApiRunner on this machine, one worker process per core
  (``--direct_num_workers=0 --direct_running_mode=multi_processing`` unless given). Beam 2.77's
  DirectRunner first tries to download and start the Prism runner from GitHub; we go straight to
  the FnApiRunner so that a local build never reaches for the network.
- ``DaskRunner``: ``apache_beam.runners.dask.dask_runner.DaskRunner`` against
  ``--dask_client_address``. Each created element becomes its own partition
  (``--dask_partition_size=1`` unless a partitioning flag is given): Beam's default of 128
  elements per partition would put a whole build in one task. Cases get the target through a
  grouped join, not a side input (``--target_join=grouped``): the DaskRunner evaluates a side
  input by recomputing its upstream graph inside every task that reads it. Listing tasks and files
  are not redistributed before indexing (``--spread_inputs=false``): each listing task already
  is its own partition. Every GroupByKey first merges its input down to ``--listing_shards``
  partitions (Dask's task shuffle costs N * N tasks for N partitions, and Flatten adds up
  partitions), so ``--listing_shards`` is the parallelism of every stage on Dask; one-key groups
  use one partition and spreading groups deal elements out evenly without a shuffle.
- ``DataflowRunner``, ``PortableRunner``, ``FlinkRunner``, ``SparkRunner``, ``PrismRunner``:
  passed to Beam by name, with whatever flags they need.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner, PipelineState

from pipelines.beam.labels import ONE_KEY, SHUFFLE, SPREAD, group_kind
from pipelines.beam.options import HccShardsOptions

_LOG = logging.getLogger("hcc_shards.build")


DIRECT = "DirectRunner"
DASK = "DaskRunner"
PASS_THROUGH: tuple[str, ...] = (
    "DataflowRunner",
    "PortableRunner",
    "FlinkRunner",
    "SparkRunner",
    "PrismRunner",
)
"""Runners handed to Beam by name."""

_ALIASES: dict[str, str] = {
    "direct": DIRECT,
    "directrunner": DIRECT,
    "dask": DASK,
    "daskrunner": DASK,
    "apache_beam.runners.dask.dask_runner.daskrunner": DASK,
    **{name.lower(): name for name in PASS_THROUGH},
    **{name.lower().removesuffix("runner"): name for name in PASS_THROUGH},
}


def runner_name(options: PipelineOptions) -> str:
    """Canonical runner name from ``--runner`` (DirectRunner when absent)."""
    raw = options.view_as(StandardOptions).runner
    if raw is None:
        return DIRECT
    name = raw if isinstance(raw, str) else type(raw).__name__
    canonical = _ALIASES.get(name.lower())
    if canonical is None:
        known = [DIRECT, DASK, *PASS_THROUGH]
        raise ValueError(f"--runner {name!r} is not supported; expected one of {known}")
    return canonical


def _given(argv: Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + "=") for a in argv for f in flags)


def with_runner_defaults(argv: Sequence[str]) -> list[str]:
    """``argv`` plus the defaults hcc-shards uses for its runner (flags already given win)."""
    out = list(argv)
    name = runner_name(PipelineOptions(out))
    if name == DIRECT:
        if not _given(out, "--direct_num_workers"):
            out.append("--direct_num_workers=0")
        if not _given(out, "--direct_running_mode"):
            out.append("--direct_running_mode=multi_processing")
    elif name == DASK:
        if not _given(out, "--dask_partition_size", "--dask_npartitions"):
            out.append("--dask_partition_size=1")
        if not _given(out, "--target_join"):
            out.append("--target_join=grouped")
        if not _given(out, "--spread_inputs"):
            out.append("--spread_inputs=false")
    return out


DASK_WORKER_CONFIG = Path(__file__).resolve().parent.parent / "dask" / "hcc-shards.yaml"
"""Dask settings for build workers (docs/RUNNERS.md): glibc malloc thresholds for the nanny's workers."""


def dask_worker_config() -> dict[str, object]:
    """:data:`DASK_WORKER_CONFIG` as dotted keys, for ``dask.config.set(...)`` around the start of a
    LocalCluster (remote workers read the file through ``DASK_CONFIG``)."""
    import yaml

    def flat(prefix: str, node: object) -> dict[str, object]:
        if not isinstance(node, dict):
            return {prefix: node}
        return {
            k: v for key, sub in node.items() for k, v in flat(f"{prefix}.{key}".lstrip("."), sub).items()
        }

    return flat("", yaml.safe_load(DASK_WORKER_CONFIG.read_text()))


def is_local(options: PipelineOptions) -> bool:
    """True when the workers are processes of this machine started by Beam itself."""
    return runner_name(options) in (DIRECT, "PrismRunner")


def reports_progress(options: PipelineOptions) -> bool:
    """Whether workers can write progress into a local directory of the launcher."""
    return runner_name(options) == DIRECT


def quiet_local_credentials() -> None:
    """Skip the Google Compute Engine metadata probe in this process and the workers it starts.

    Without credentials, google-auth probes the GCE metadata server and Beam retries that lookup
    with back-off (tens of seconds per process). Local runs never need it; cloud runners do, so
    this is only called for local runners. Values already set by the user are kept.
    """
    os.environ.setdefault("NO_GCE_CHECK", "True")


class LocalDirectRunner(PipelineRunner):
    """Beam's FnApiRunner, honouring ``--direct_num_workers`` and ``--direct_running_mode``."""

    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        # Workers read the pipeline options from the provision info, as under Beam's DirectRunner.
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)


def make_runner(options: PipelineOptions) -> PipelineRunner | str:
    """The runner object (Direct, Dask) or name (the others) for ``options``."""
    name = runner_name(options)
    if name == DIRECT:
        return LocalDirectRunner()
    if name == DASK:
        return _dask_runner(options.view_as(HccShardsOptions).listing_shards, group_kind)
    return name


def fewer_partitions_group_by_key(
    max_partitions: int, kind_of: Callable[[str], str] = lambda label: SHUFFLE
) -> type:
    """The DaskRunner's GroupByKey op, merging its input down to ``max_partitions`` first.

    Dask's task-based shuffle of a bag of N partitions schedules N * N tasks, and a Flatten adds
    up the partitions of its inputs: the outcomes of a 24-case build reached about 50 partitions,
    and its final GroupByKey alone about 2,600 tasks. Merging partitions costs one task per output
    partition. ``kind_of`` (the full label of the GroupByKey -> a kind) tells two special groups:

    - ``ONE_KEY``: everything goes under one key (global combines, the target join). The input is
      merged into one partition, where the output would be anyway: a few tasks, not N * N.
    - ``SPREAD``: the keys are the elements' identities and the group only exists to move elements
      between workers (:class:`pipelines.beam.transforms.Spread`). The elements are dealt out evenly
      over ``max_partitions`` partitions instead of by key hash, and each becomes its own group:
      the same elements after the ungrouping, with no shuffle and tasks of equal size (hashing 48
      cases into 16 partitions gave tasks of 1 to 6 cases, and the longest set the build's end).
    """
    from apache_beam.runners.dask import transform_evaluator

    unwrap = transform_evaluator.defenestrate

    class FewerPartitionsGroupByKey(transform_evaluator.GroupByKey):
        def apply(self, input_bag, side_inputs=None):
            kind = kind_of(self.applied.full_label)
            if kind == SPREAD:
                # Gathered first: splitting N uneven partitions into N leaves them as they were.
                gathered = input_bag.repartition(npartitions=1) if input_bag.npartitions > 1 else input_bag
                return gathered.repartition(npartitions=max_partitions).map(_one_group, unwrap)
            limit = 1 if kind == ONE_KEY else max_partitions
            if input_bag.npartitions > limit:
                input_bag = input_bag.repartition(npartitions=limit)
            # shuffle="tasks" named here: the default is looked up by importing dask.dataframe
            # (half a second of the launcher's time) only to be turned into "tasks" for a bag.
            grouped = input_bag.groupby(_beam_key, shuffle="tasks")
            return grouped.map(_beam_values, unwrap)

    return FewerPartitionsGroupByKey


def _beam_key(item: tuple) -> object:
    return item[0]


def _one_group(item: tuple, unwrap: Callable[[object], object]) -> tuple:
    """(key, [value]) of one Beam (key, windowed value) pair: a group of one."""
    return item[0], [unwrap(item[1])]


def _beam_values(group: tuple, unwrap: Callable[[object], object]) -> tuple:
    """(key, [values]) of a Dask group of Beam (key, windowed value) pairs, as Beam's GroupByKey gives."""
    key, items = group
    return key, [unwrap(item[1]) for item in items]


def _dask_runner(
    max_partitions: int, kind_of: Callable[[str], str] = lambda label: SHUFFLE
) -> PipelineRunner:
    """Beam's DaskRunner with :func:`fewer_partitions_group_by_key` as its GroupByKey."""
    from apache_beam.runners.dask import transform_evaluator
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from apache_beam.runners.dask.overrides import _GroupByKeyOnly

    op = fewer_partitions_group_by_key(max_partitions, kind_of)

    class Runner(DaskRunner):
        def run_pipeline(self, pipeline, options):
            table = transform_evaluator.TRANSLATIONS
            previous = table[_GroupByKeyOnly]
            # The translation table is module state that Beam's visitor reads while this call
            # builds the graph; the Dask computation it returns no longer consults it.
            table[_GroupByKeyOnly] = op
            try:
                return super().run_pipeline(pipeline, options)
            finally:
                table[_GroupByKeyOnly] = previous

    return Runner()


def run_to_completion(pipeline) -> list | None:
    """Run ``pipeline``, wait for it, release runner resources, and raise unless it finished DONE.

    Returns the elements of the terminal PCollection when the runner hands them back (DaskRunner
    computes the last step on the client's futures), else None.
    """
    result = pipeline.run()
    values = None
    try:
        state = result.wait_until_finish()
        futures = getattr(result, "futures", None)  # DaskRunnerResult
        if futures is not None and state == PipelineState.DONE:
            values = [item for part in result.client.gather(futures) for item in part]
    finally:
        client = getattr(result, "client", None)  # DaskRunner's distributed.Client
        if client is not None:
            client.close()
    if state is not None and state != PipelineState.DONE:
        raise RuntimeError(f"the pipeline ended in state {state}, expected {PipelineState.DONE}")
    return values

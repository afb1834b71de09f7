"""The build's Dataflow job, produced offline: the graph, its fused stages, the worker environment.

Beam's DataflowRunner with ``--dry_run=True`` does everything a submission does except talking to
the service: overrides, runner-API translation, the Docker environment of the workers and the job
description. The test builds that job from the real graph (``pipelines.build.build_pipeline``) with
the flags ``deploy/launch.sh direct`` passes, with every non-loopback connection refused and no
credentials, then checks the stages and the worker settings. Runs in the main environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = "us-central1-docker.pkg.dev/hcc-shards-ci/hcc-shards/hcc-shards:0.1.0"
SETTINGS = {
    "HCC_PROJECT": "hcc-shards-ci",
    "HCC_REGION": "us-central1",
    "HCC_IMAGE": IMAGE,
    "HCC_TEMP_LOCATION": "gs://hcc-shards-ci-hcc-shards-temp/temp",
    "HCC_STAGING_LOCATION": "gs://hcc-shards-ci-hcc-shards-staging/staging",
    "HCC_SERVICE_ACCOUNT": "hcc-shards-dataflow@hcc-shards-ci.iam.gserviceaccount.com",
    "HCC_SUBNETWORK": "regions/us-central1/subnetworks/hcc-shards-us-central1",
    "HCC_JOB_NAME": "hcc-shards-graph-test",
}
INPUT = "gs://hcc-shards-ci-hcc-shards-input/hcc-tace-seg"
OUTPUT = "gs://hcc-shards-ci-hcc-shards-dataset/hcc-tace-seg"

# The build's steps (docs/FORMAT.md, order of operations), as named in pipelines/build.py.
LIST, READ_HEADER, PAIR = "List files/List", "Index headers/Read header", "Pair/Pair"
RESOLVE, BUILD_CASE, COMMIT = "Resolve target/Resolve", "Build cases/Build case", "Commit/Commit dataset"
TOP_LEVEL_STEPS = (
    "List files",
    "Index headers",
    "Pair",
    "Resolve target",
    "Build cases",
    "Outcomes",
    "Commit",
)


@dataclass(frozen=True)
class DryRunJob:
    """What the dry run produced."""

    argv: list[str]
    """Flags the pipeline was built with (those of deploy/launch.sh direct, plus --dry_run)."""
    options: Any
    """The PipelineOptions."""
    job: Any
    """apache_beam.runners.dataflow.internal.apiclient.Job (proto_pipeline, proto)."""
    stages: list[Any]
    """Fused stages (Beam's translations, the same fusion rules a runner applies)."""


def _launch_argv() -> list[str]:
    """The pipeline flags of `deploy/launch.sh direct`, so that the script and this test agree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCC_")} | SETTINGS
    proc = subprocess.run(
        ["bash", str(REPO / "deploy" / "launch.sh"), "--dry-run", "direct", INPUT, OUTPUT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("+ ")]
    argv = shlex.split(line[2:])
    assert argv[1:3] == ["-m", "pipelines.build"], argv
    return argv[3:]


def _go_offline(mp: pytest.MonkeyPatch, gcloud_config: Path) -> None:
    """Refuse every connection that leaves the machine, and hide every credential source."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        host = str(address[0] if isinstance(address, tuple) else address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not host.startswith(("127.", "::1")):
            raise OSError(f"network access to {address!r} during an offline Dataflow dry run")
        return real_connect(sock, address)

    mp.setattr(socket.socket, "connect", guarded)
    mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    mp.setenv("CLOUDSDK_CONFIG", str(gcloud_config))
    mp.setenv("NO_GCE_CHECK", "True")  # google-auth: do not probe the GCE metadata server
    mp.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    mp.setenv("GCE_METADATA_IP", "127.0.0.1:9")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DryRunJob]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability import common_urns
    from apache_beam.runners.portability.fn_api_runner import translations as tr

    from pipelines.beam.graph import build_pipeline

    with pytest.MonkeyPatch.context() as mp:
        _go_offline(mp, tmp_path_factory.mktemp("gcloud"))
        argv = [
            *_launch_argv(),
            "--dry_run=True",
            # Beam would otherwise run `pip freeze` to stage a list of the submitter's packages.
            "--experiments=disable_logging_submission_environment",
        ]
        options = PipelineOptions(argv)
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline)
        result = pipeline.run()
        job = result.job
        _, stages = tr.create_and_optimize_stages(
            job.proto_pipeline,
            [
                tr.annotate_downstream_side_inputs,
                tr.fix_side_input_pcoll_coders,
                tr.lift_combiners,
                tr.expand_gbk,
                tr.sink_flattens,
                tr.greedily_fuse,
                tr.sort_stages,
            ],
            known_runner_urns=frozenset(
                [
                    common_urns.primitives.FLATTEN.urn,
                    common_urns.primitives.GROUP_BY_KEY.urn,
                    common_urns.primitives.IMPULSE.urn,
                ]
            ),
        )
        yield DryRunJob(argv=argv, options=options, job=job, stages=stages)


def _transforms(job: DryRunJob) -> dict[str, Any]:
    return {t.unique_name: t for t in job.job.proto_pipeline.components.transforms.values()}


def _stage_of(job: DryRunJob, name: str) -> int:
    found = [i for i, s in enumerate(job.stages) if any(t.unique_name == name for t in s.transforms)]
    assert len(found) == 1, f"{name!r} is in stages {found}, expected exactly one"
    return found[0]


def test_dry_run_produces_a_batch_job(dry_run: DryRunJob) -> None:
    from google.cloud import dataflow

    assert dry_run.job.proto.type_ == dataflow.JobType.JOB_TYPE_BATCH
    assert dry_run.job.proto.name == SETTINGS["HCC_JOB_NAME"]


def test_graph_has_every_build_step_in_order(dry_run: DryRunJob) -> None:
    pipeline = dry_run.job.proto_pipeline
    [root_id] = pipeline.root_transform_ids
    root = pipeline.components.transforms[root_id]
    top = [pipeline.components.transforms[t].unique_name for t in root.subtransforms]
    positions = [top.index(step) for step in TOP_LEVEL_STEPS if step in top]
    assert len(positions) == len(TOP_LEVEL_STEPS), f"missing steps: {set(TOP_LEVEL_STEPS) - set(top)}"
    assert positions == sorted(positions), f"steps out of order: {top}"


def test_every_step_runs_in_the_image(dry_run: DryRunJob) -> None:
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    components = dry_run.job.proto_pipeline.components
    used = {t.environment_id for t in components.transforms.values() if t.environment_id}
    assert len(used) == 1, f"expected one worker environment, got {sorted(used)}"
    env = components.environments[used.pop()]
    assert env.urn == common_urns.environments.DOCKER.urn
    payload = beam_runner_api_pb2.DockerPayload.FromString(env.payload)
    assert payload.container_image == IMAGE


def test_workers_install_nothing_at_run_time(dry_run: DryRunJob) -> None:
    from apache_beam.portability.api import beam_runner_api_pb2

    for env in dry_run.job.proto_pipeline.components.environments.values():
        staged = {
            beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
            for d in env.dependencies
        }
        # Only the pickled main session travels; no requirements, sdist, wheel or Beam SDK tarball
        # that the boot program would pip-install on every worker.
        assert staged <= {"pickled_main_session", "submission_environment_dependencies.txt"}, staged


def test_image_base_matches_the_beam_sdk_that_builds_the_job(dry_run: DryRunJob) -> None:
    # Beam names the SDK base image of the running SDK in the environment's capabilities; the
    # image's FROM line must be exactly that image, or the workers run a different SDK.
    [env] = dry_run.job.proto_pipeline.components.environments.values()
    [base] = [c.split(":", 3)[3] for c in env.capabilities if c.startswith("beam:version:sdk_base:")]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    version = re.search(r"^ARG BEAM_VERSION=(\S+)$", dockerfile, re.M)
    image = re.search(r"^FROM (apache/beam_python\S+)$", dockerfile, re.M)
    assert version and image
    assert image.group(1).replace("${BEAM_VERSION}", version.group(1)) == base


def test_listing_index_pairing_and_case_building_are_separate_stages(dry_run: DryRunJob) -> None:
    # Each boundary is a shuffle, so the work after it is spread over all workers instead of being
    # fused onto the few that produced its input (16 listing tasks, one pairing per patient).
    assert _stage_of(dry_run, LIST) < _stage_of(dry_run, READ_HEADER)
    assert _stage_of(dry_run, READ_HEADER) < _stage_of(dry_run, PAIR)
    assert _stage_of(dry_run, PAIR) < _stage_of(dry_run, BUILD_CASE)
    # A case-building stage does nothing but build cases (one pairing in, one outcome out).
    build_stage = dry_run.stages[_stage_of(dry_run, BUILD_CASE)]
    heavy = {t.unique_name for t in build_stage.transforms if "/Read" not in t.unique_name}
    assert {n for n in heavy if not n.startswith(("Build cases/", "Outcomes/"))} == set(), heavy


def test_cases_wait_for_the_target_spacing_side_input(dry_run: DryRunJob) -> None:
    transforms = _transforms(dry_run)
    producers = {
        pc: name for name, t in transforms.items() if not t.subtransforms for pc in t.outputs.values()
    }
    build = transforms[BUILD_CASE]
    side = [producers[pc] for tag, pc in build.inputs.items() if tag.startswith("python_side_input")]
    assert side == [RESOLVE], side
    assert _stage_of(dry_run, RESOLVE) < _stage_of(dry_run, BUILD_CASE)


def test_one_commit_after_everything(dry_run: DryRunJob) -> None:
    commits = [n for n in _transforms(dry_run) if "Commit dataset" in n]
    assert commits == [COMMIT]
    commit_stage = _stage_of(dry_run, COMMIT)
    for step in (LIST, READ_HEADER, PAIR, RESOLVE, BUILD_CASE):
        assert _stage_of(dry_run, step) < commit_stage, f"{step} runs after the commit"
    # The commit consumes one global collection of every outcome: a single element, so exactly
    # one worker writes the manifest, dataset.json and LATEST.json.
    stage = dry_run.stages[commit_stage]
    assert any("All outcomes" in t.unique_name for t in stage.transforms)


def test_worker_pool_is_private_with_the_recommended_shape(dry_run: DryRunJob) -> None:
    from apache_beam.runners.dataflow.internal import apiclient
    from google.cloud import dataflow

    # The environment the service would receive (built offline; normally done at submission).
    env = apiclient.Environment(
        packages=[],
        options=dry_run.options,
        environment_version="8",
        proto_pipeline_staged_url=f"{SETTINGS['HCC_STAGING_LOCATION']}/pipeline.pb",
        proto_pipeline=dry_run.job.proto_pipeline,
    ).proto
    [pool] = env.worker_pools
    assert pool.ip_configuration == dataflow.WorkerIPAddressConfiguration.WORKER_IP_PRIVATE
    assert pool.subnetwork == SETTINGS["HCC_SUBNETWORK"]
    assert pool.machine_type == "n2-standard-4"
    assert pool.disk_size_gb == 50
    assert pool.num_workers == 2
    assert pool.autoscaling_settings.max_num_workers == 20
    assert pool.autoscaling_settings.algorithm == dataflow.AutoscalingAlgorithm.AUTOSCALING_ALGORITHM_BASIC
    assert pool.worker_harness_container_image == IMAGE
    assert [i.container_image for i in pool.sdk_harness_container_images] == [IMAGE]
    assert env.service_account_email == SETTINGS["HCC_SERVICE_ACCOUNT"]
    options = dataflow.Environment.to_dict(env)["sdk_pipeline_options"]["options"]
    assert options["input"] == INPUT and options["output"] == OUTPUT
    assert not {"requirements_file", "setup_file", "extra_packages"} & set(options)


def test_template_parameters_are_pipeline_flags() -> None:
    from pipelines.beam.options import HccShardsOptions

    parser = argparse.ArgumentParser()
    HccShardsOptions._add_argparse_args(parser)
    parser_flags = {flag.lstrip("-") for action in parser._actions for flag in action.option_strings}
    metadata = json.loads((REPO / "deploy" / "metadata.json").read_text())
    names = {p["name"] for p in metadata["parameters"]}
    assert names <= parser_flags, (
        f"template parameters that the pipeline does not accept: {names - parser_flags}"
    )
    assert {"input", "output"} <= names


def test_flex_template_entry_point_is_the_build_main() -> None:
    import importlib.util

    from pipelines.build import main

    spec = importlib.util.spec_from_file_location("flex_main", REPO / "deploy" / "flex_main.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ guard keeps it from running a build
    assert module.main is main


def test_offline_guard_refuses_public_addresses(tmp_path: Path) -> None:
    # The guard the dry run runs under is real: a connection to a public address fails at once.
    with pytest.MonkeyPatch.context() as mp:
        _go_offline(mp, tmp_path)
        with pytest.raises(OSError, match="network access"):
            socket.create_connection(("192.0.2.1", 443), timeout=1)

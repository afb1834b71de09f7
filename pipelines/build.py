"""The build's launcher: ``python -m pipelines.build --input IN --output OUT [--engine beam|spark] [...]``.

``--engine beam`` (the default) runs the Beam pipeline on ``--runner`` (DirectRunner, DaskRunner,
DataflowRunner, ...) with Beam's own flags; ``--engine spark`` runs the native Spark driver on
``--spark_master`` (default ``local[*]``). ``hcc-shards build`` ends here too. Both drive the same
stages (hcc_shards.build) and write the same dataset.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hcc_shards.build.commit import Summary
from hcc_shards.build.flags import add_build_flags
from hcc_shards.build.launch import configure_logging, format_summary
from hcc_shards.errors import ConfigError, OperatorError

ENGINES = ("beam", "spark")
"""Engines a build runs on."""


def engine_flags(argv: Sequence[str]) -> tuple[str, str | None, list[str]]:
    """(engine, Spark master or None, the other flags) of a launcher argv."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--engine", default="beam")
    parser.add_argument("--spark_master", "--spark-master", dest="spark_master", default=None)
    values, rest = parser.parse_known_args(list(argv))
    engine = str(values.engine).lower()
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {values.engine!r}")
    if values.spark_master and engine != "spark":
        raise ConfigError("--spark_master is a flag of --engine spark")
    return engine, values.spark_master, rest


def run_build(argv: Sequence[str], *, progress: bool = True) -> Summary:
    """Run the build that ``argv`` describes on its engine, to the end; return its summary."""
    engine, master, rest = engine_flags(argv)
    if engine == "spark":
        from pipelines.spark.driver import DEFAULT_MASTER
        from pipelines.spark.driver import run_build as run_on_spark

        return run_on_spark(rest, master=master or DEFAULT_MASTER, progress=progress)
    from pipelines.beam.launch import run_build as run_on_beam

    return run_on_beam(rest, progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        parser = argparse.ArgumentParser(
            prog="python -m pipelines.build",
            description="Build a hcc-shards dataset. --engine beam (default) also takes Beam's own flags "
            "(--runner, --direct_num_workers, --dask_client_address, ...); --engine spark takes "
            "--spark_master. See docs/RUNNERS.md.",
        )
        parser.add_argument("--engine", choices=ENGINES, default="beam")
        parser.add_argument("--spark_master", default=None, help="Spark master (default local[*])")
        add_build_flags(parser)
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

"""The build on Spark: list -> index (per partition) -> group by patient -> pair -> one pairing per
case id -> group by image -> build -> outcomes collected -> commit on the driver.

Every step is a stage function of :mod:`hcc_shards.build`; Spark only decides where each call runs.
Groups are partitioned by a stable hash of their key (the same in every process, unlike Python's
``hash`` of a string), so a rerun puts every patient and image in the same task.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hcc_shards.build import cases, index, listing, pair
from hcc_shards.build.commit import Summary, commit_outcomes
from hcc_shards.build.flags import parse_build_flags
from hcc_shards.build.launch import launch
from hcc_shards.build.outcomes import (
    Indexed,
    Outcome,
    Quarantined,
    Started,
    TargetResolved,
    is_not_record,
    is_record,
)
from hcc_shards.build.plan import BuildPlan
from hcc_shards.build.target import resolve_target

DEFAULT_MASTER = "local[*]"
"""Spark master of ``hcc-shards build --engine spark`` without --spark-master: this machine's cores."""
APP_NAME = "hcc-shards build"
SETUP_JAVA = os.path.join(
    os.environ.get("HCC_SHARDS_HOME", os.path.expanduser("~/.cache/hcc-shards")), "envs", "java"
)
"""Where scripts/setup.sh links the Java 17+ runtime it found or installed."""


def stable_partition(key: Any) -> int:
    """Partition hash of a group key: the same in every process and run."""
    return int.from_bytes(hashlib.sha1(str(key).encode("utf-8", "surrogateescape")).digest()[:8], "big")


def is_local_master(master: str | None) -> bool:
    """Whether the executors run on this machine (their progress reaches the launcher's disk)."""
    return bool(master) and str(master).startswith("local")


def session(master: str | None = None) -> Any:
    """The SparkSession: a new one on ``master``, or (None) the one spark-submit configured.

    On a local master the Python workers are told to use this interpreter: Spark otherwise starts
    whatever ``python3`` is first on PATH, and refuses a worker of another minor version.
    """
    from pyspark.sql import SparkSession

    if is_local_master(master):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if "JAVA_HOME" not in os.environ and shutil.which("java") is None and os.path.isdir(SETUP_JAVA):
        os.environ["JAVA_HOME"] = SETUP_JAVA  # the runtime scripts/setup.sh installed for Spark
    builder = SparkSession.builder.appName(APP_NAME).config("spark.ui.showConsoleProgress", "false")
    if master:
        builder = builder.master(master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run(plan: BuildPlan, spark: Any) -> Summary:
    """The whole build of ``plan`` on ``spark``; the commit runs here, on the driver."""
    sc = spark.sparkContext
    n = plan.listing_shards
    tasks = listing.listing_tasks(plan)
    kept = []  # RDDs read by more than one action, released at the end

    def keep(rdd: Any) -> Any:
        kept.append(rdd.persist())
        return rdd

    try:
        indexed = keep(
            sc.parallelize(tasks, len(tasks))
            .flatMap(lambda t: listing.list_task(t, plan))
            .keyBy(lambda r: r.url)
            .partitionBy(n, stable_partition)
            .values()
            .map(lambda r: index.index_one(r, plan))
        )
        stats = index.add_index_stats(indexed.mapPartitions(_index_totals).collect())
        records = indexed.filter(is_record).collect()
        paired = keep(
            indexed.filter(is_not_record)
            .keyBy(lambda h: h.patient_id)
            .groupByKey(n, stable_partition)
            .flatMap(lambda kv: pair.pair_one_patient(kv[0], kv[1], plan))
        )
        records += paired.filter(is_record).collect()
        unique = keep(
            paired.filter(is_not_record)
            .keyBy(pair.case_id_of)
            .groupByKey(n, stable_partition)
            .flatMap(lambda kv: pair.unique_case(kv[0], kv[1], plan))
        )
        records += unique.filter(is_record).collect()
        pairings = unique.filter(is_not_record)
        if plan.limit:
            pairings = sc.parallelize(pairings.takeOrdered(plan.limit, key=pair.case_sort_key), n)
        pairings = keep(pairings)
        outcomes: list[Outcome] = [Started(), Indexed(stats), *(Quarantined(r) for r in records)]
        spacings = pairings.map(pair.pairing_spacing).collect()
        if spacings:
            target = resolve_target(spacings, plan)
            outcomes.append(TargetResolved(target))
            outcomes += (
                pairings.keyBy(pair.image_group_key)
                .groupByKey(n, stable_partition)
                .flatMap(lambda kv: cases.build_image(list(kv[1]), target, plan))
                .collect()
            )
    finally:
        for rdd in kept:
            rdd.unpersist()
    return commit_outcomes(outcomes, plan)


def _index_totals(items: Iterable[Any]) -> Iterator[index.IndexStats]:
    yield index.add_index_stats(index.index_stats(i) for i in items)


def run_build(argv: Sequence[str], *, master: str | None = DEFAULT_MASTER, progress: bool = True) -> Summary:
    """Parse the build's flags from ``argv`` and run the build on Spark to the end.

    ``master`` None takes the session spark-submit made (its ``--master``); a session this call
    made is stopped at the end.
    """
    plan = BuildPlan.from_flags(parse_build_flags(argv, prog="hcc-shards build --engine spark"))
    from pyspark.sql import SparkSession

    existing = SparkSession.getActiveSession()
    spark = session(master)
    try:
        return launch(
            plan, lambda p: run(p, spark), local=is_local_master(spark.sparkContext.master), progress=progress
        )
    finally:
        if existing is None and master is not None:
            spark.stop()

"""Engine benchmark (not part of CI): the same build on Beam's DirectRunner, Beam's DaskRunner and Spark.

Run from the repository root with the main environment:

    ~/.cache/hcc-shards/envs/main/bin/python benchmarks/engines_bench.py

Builds the pipeline benchmark's cohort (benchmarks/bench_cases.py: ``--cases`` clones, default 48,
of the 90-slice 512 x 512 case; the cohort of build_bench.py) with ``hcc-shards build``, once per
engine, one after the other in the same run, each into its own output:

- ``direct``: ``--runner DirectRunner --workers 2`` (two worker processes);
- ``dask``: ``--runner DaskRunner --dask-address ...`` on a dask.distributed LocalCluster of 2
  worker processes with 1 thread each, started for the run in its own process;
- ``spark``: ``--engine spark --spark-master local[2]``.

Per engine: wall time of the ``hcc-shards build`` process and the build's own wall time (from its
summary), cases per minute from the latter, and peak resident memory: the sum of RSS over every
process of the engine (the build process and all its descendants: Beam workers, Spark's JVM and
Python workers; for Dask also the cluster's process tree), sampled every ``--sample-every``
seconds. Ratios are against DirectRunner. Every process runs one thread of numeric work, as in
build_bench.py.

Then the manifests (``manifest.parquet`` of the version each ``LATEST.json`` points at) must have
identical ``case_id`` and ``checksum`` columns, row for row; any difference is printed and the
script exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_bench import ONE_THREAD  # noqa: E402  (benchmarks/ is not a package)

ENGINES = ("direct", "dask", "spark")


# -- peak memory of a process tree -----------------------------------------------------------------


class TreeSampler:
    """Samples the summed RSS of some root processes and all their descendants in a thread."""

    def __init__(self, roots: list[int], every: float) -> None:
        self.roots = roots
        self.every = every
        self.peak = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                for p in [root, *root.children(recursive=True)]:
                    found[p.pid] = p
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def sample(self) -> None:
        total, count = 0, 0
        for p in self._tree():
            try:
                total += p.memory_info().rss
                count += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if total > self.peak:
            self.peak, self.peak_processes = total, count

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- a LocalCluster in its own process ---------------------------------------------------------------


def serve_dask(workers: int) -> int:
    """Start a LocalCluster (``workers`` processes, 1 thread each), print its address, wait for stdin EOF."""
    import dask
    from distributed import LocalCluster

    from pipelines.beam.runners import dask_worker_config

    # The workers as docs/RUNNERS.md deploys them (glibc malloc thresholds, pipelines/dask).
    with dask.config.set(dask_worker_config()):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()
    cluster.close()
    return 0


@contextlib.contextmanager
def dask_cluster(workers: int, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """(scheduler address, pid of the cluster's process) while the cluster runs."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-dask", str(workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        address = proc.stdout.readline().strip() if proc.stdout else ""
        if not address.startswith("tcp://"):
            raise RuntimeError(f"the dask cluster did not start (got {address!r})")
        yield address, proc.pid
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- one build ---------------------------------------------------------------------------------------


def engine_flags(engine: str, workers: int, dask_address: str | None) -> list[str]:
    """``hcc-shards build`` flags that select the engine."""
    if engine == "direct":
        return ["--runner", "DirectRunner", "--workers", str(workers)]
    if engine == "dask":
        return ["--runner", "DaskRunner", "--dask-address", str(dask_address)]
    if engine == "spark":
        return ["--engine", "spark", "--spark-master", f"local[{workers}]"]
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def run_build(engine: str, input_dir: Path, out_dir: Path, spacing: str, workers: int, every: float) -> dict:
    """``hcc-shards build`` on one engine; wall time, the build's own wall time and peak tree RSS."""
    shutil.rmtree(out_dir, ignore_errors=True)
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with contextlib.ExitStack() as stack:
        roots: list[int] = []
        address = None
        if engine == "dask":
            address, cluster_pid = stack.enter_context(dask_cluster(workers, env))
            roots.append(cluster_pid)
        argv = [
            sys.executable,
            "-m",
            "hcc_shards.cli",
            "build",
            str(input_dir),
            str(out_dir),
            f"--spacing={spacing}",
            "--quiet",
            *engine_flags(engine, workers, address),
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        with TreeSampler([*roots, proc.pid], every) as sampler:
            stdout, stderr = proc.communicate()
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} build failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}")
    wall = re.search(r"wall time\s+([0-9.]+) s", stdout)
    return {
        "seconds": seconds,
        "build_seconds": float(wall.group(1)) if wall else None,
        "peak_rss": sampler.peak,
        "peak_processes": sampler.peak_processes,
        "stdout_tail": stdout[-800:],
    }


# -- manifests -------------------------------------------------------------------------------------


def manifest_checksums(out_dir: Path) -> list[tuple[str, str]]:
    """(case_id, checksum) of every manifest row of the committed version, in the manifest's order."""
    import pyarrow.parquet as pq

    from hcc_shards.shards.commit import read_latest

    version = read_latest(str(out_dir))
    if version is None:
        raise RuntimeError(f"{out_dir}: no LATEST.json, the build committed nothing")
    table = pq.read_table(Path(version) / "manifest.parquet", columns=["case_id", "checksum"])
    return list(zip(table["case_id"].to_pylist(), table["checksum"].to_pylist(), strict=True))


def compare_manifests(manifests: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Differences of every manifest against the first one, row for row (empty when identical)."""
    (ref_name, ref), *others = manifests.items()
    problems = []
    for name, rows in others:
        if len(rows) != len(ref):
            problems.append(f"{name}: {len(rows)} manifest rows, {ref_name}: {len(ref)}")
        for i, (a, b) in enumerate(zip(ref, rows, strict=False)):
            if a != b:
                problems.append(f"row {i}: {ref_name} {a[0]} {a[1]} != {name} {b[0]} {b[1]}")
    return problems


# -- report ----------------------------------------------------------------------------------------


def report(results: dict[str, dict], n: int) -> list[str]:
    lines = [
        "| engine | wall (process) | wall (build) | cases/min | peak RSS (tree) | processes at peak "
        "| time / DirectRunner | peak RSS / DirectRunner |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    base = results.get("direct")
    for engine, r in results.items():
        t = r["build_seconds"] or r["seconds"]
        rate = 60 * n / t
        if base:
            t0 = base["build_seconds"] or base["seconds"]
            ratios = f"{t / t0:.2f} | {r['peak_rss'] / base['peak_rss']:.2f}"
        else:
            ratios = " | "
        lines.append(
            f"| {engine} | {r['seconds']:.1f} s | {t:.1f} s | {rate:.1f} | {r['peak_rss'] / 2**20:.0f} MiB "
            f"| {r['peak_processes']} | {ratios} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default=",".join(ENGINES), help="comma separated, of direct,dask,spark")
    p.add_argument("--cases", type=int, default=48, help="cases in the cohort (clones of one case)")
    p.add_argument("--slices", type=int, default=90)
    p.add_argument("--dz", type=float, default=2.5)
    p.add_argument("--dxy", type=float, default=0.70)
    p.add_argument("--spacing", default="2.5,0.78,0.78", help="target spacing z,y,x mm")
    p.add_argument("--workers", type=int, default=2, help="worker processes / task slots of each engine")
    p.add_argument("--sample-every", type=float, default=0.1, help="seconds between RSS samples")
    p.add_argument("--workdir", default=None, help="cohort kept here between runs (default: a temp dir)")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    p.add_argument("--serve-dask", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_dask is not None:
        return serve_dask(args.serve_dask)

    engines = [e for e in args.engines.split(",") if e]
    for e in engines:
        engine_flags(e, args.workers, "tcp://check")  # unknown names fail before the cohort is written
    import bench_cases

    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "hcc-shards-build-bench")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; workdir {workdir}", flush=True)
    cohort = bench_cases.write_cohort(workdir, args.cases, slices=args.slices, dz=args.dz, dxy=args.dxy)

    results: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for engine in engines:
        out_dir = workdir / f"engines-out-{engine}"
        try:
            res = run_build(engine, cohort, out_dir, args.spacing, args.workers, args.sample_every)
        except RuntimeError as exc:  # the other engines still run and are reported
            failed[engine] = str(exc)
            print(f"{engine}: FAILED\n{str(exc)[-2000:]}", file=sys.stderr, flush=True)
            continue
        res["manifest"] = manifest_checksums(out_dir)
        results[engine] = res
        print(
            f"{engine}: {args.cases} cases in {res['build_seconds'] or res['seconds']:.1f} s (process "
            f"{res['seconds']:.1f} s), peak RSS {res['peak_rss'] / 2**20:.0f} MiB over "
            f"{res['peak_processes']} processes, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    print()
    print("\n".join(report(results, args.cases)))
    problems = compare_manifests({e: r["manifest"] for e, r in results.items()}) if len(results) > 1 else []
    if args.json:
        raw = {"args": vars(args), "results": results, "failed": failed}
        Path(args.json).write_text(json.dumps(raw, indent=1))
    if problems:
        print(f"\nMANIFESTS DIFFER ({len(problems)} problems):", file=sys.stderr)
        print("\n".join(problems[:50]), file=sys.stderr)
        return 1
    if failed:
        print(f"\nbuild failed on: {', '.join(failed)}", file=sys.stderr)
        return 1
    rows = len(next(iter(results.values()))["manifest"]) if results else 0
    print(f"\nmanifests: {rows} rows, case_id and checksum identical across {', '.join(results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Radiomics in the build (not part of CI): features per case and per core against pyradiomics alone.

    ~/.cache/hcc-shards/envs/main/bin/python benchmarks/features_bench.py --cases 48 --workers 2 --alone-cases 8

On ``--cases`` full-size synthetic cases (benchmarks/bench_cases.py: 90 x 512 x 512 at 2.5 x 0.70 x
0.70 mm, clones of one case), in one run:

- ``build``: ``pipelines.build`` on DirectRunner with ``--workers`` processes, without and with
  ``--features``; the difference per case is what the features cost inside the build;
- ``alone``: :func:`hcc_shards.features.case_features` (pyradiomics-bhklab) on each stored case's
  arrays (the first ``--alone-cases``), one process, one label after the other;
- ``labels``: the same with the two labels of a case in two processes (parallel within a case).

Numeric libraries get one thread each (OMP/ITK), so per core means per worker process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_cases  # noqa: E402

from hcc_shards.features import FEATURE_LABELS, case_features  # noqa: E402


def _build(inp: Path, out: Path, workers: int, *flags: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "pipelines.build",
        f"--input={inp}",
        f"--output={out}",
        "--spacing=2.5,0.7,0.7",
        f"--direct_num_workers={workers}",
        "--direct_running_mode=multi_processing",
        *flags,
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return time.perf_counter() - t


def _arrays(vdir: Path):
    import zarr

    from hcc_shards.shards.manifest import read_manifest
    from hcc_shards.shards.writer import open_store

    for row in read_manifest(str(vdir / "manifest.parquet")):
        image = zarr.open_group(open_store(str(vdir / row.image_path), None, read_only=True), mode="r")
        label = zarr.open_group(open_store(str(vdir / row.path), None, read_only=True), mode="r")
        yield row, image["0"][...], label["0"][...]


def _one_label(args):
    row_id, image, label, spacing, value = args
    masked = label.copy()
    masked[masked != value] = 0
    t = time.perf_counter()
    case_features(row_id, row_id, image, masked, spacing)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument(
        "--alone-cases",
        type=int,
        default=0,
        help="time pyradiomics alone on the first N stored cases only (0: all); the cases are clones of "
        "one case, so every case costs the same",
    )
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="features-bench-"))
    bench_cases.write_case(work / "case", seed=0, index=9, slices=90, dz=2.5, dxy=0.7)
    for k in range(args.cases):
        bench_cases.clone_case(work / "case", work / "input" / f"P{k:03d}", k)
    plain = _build(work / "input", work / "plain", args.workers)
    feats = _build(work / "input", work / "feats", args.workers, "--features")
    n = args.cases
    print(f"cases {n}, workers {args.workers}")
    print(f"build without features   {plain:7.1f} s  ({plain / n:.2f} s/case)")
    print(f"build with features      {feats:7.1f} s  ({feats / n:.2f} s/case)")
    extra = (feats - plain) / n
    print(f"features in the build    {extra:7.2f} s/case wall, {extra * args.workers:.2f} s/case per core")
    vdir = next((work / "feats" / "versions").iterdir())
    alone, per_label, split = [], [], []
    sample = args.alone_cases or n
    with ProcessPoolExecutor(max_workers=len(FEATURE_LABELS)) as pool:
        for k, (row, image, label) in enumerate(_arrays(vdir)):
            if k >= sample:
                break
            t = time.perf_counter()
            case_features(row.case_id, row.patient_id, image, label, row.spacing_zyx)
            alone.append(time.perf_counter() - t)
            jobs = [(row.case_id, image, label, row.spacing_zyx, v) for v, _ in FEATURE_LABELS]
            t = time.perf_counter()
            per_label.append(list(pool.map(_one_label, jobs)))
            split.append(time.perf_counter() - t)
    m = len(alone)
    print(f"pyradiomics alone        {sum(alone) / m:7.2f} s/case (one core, {m} cases)")
    print(
        f"  liver, tumour          {sum(p[0] for p in per_label) / m:.2f}, {sum(p[1] for p in per_label) / m:.2f} s/case"
    )
    print(f"labels in 2 processes    {sum(split) / m:7.2f} s/case wall")
    print(f"in-build / alone         {extra * args.workers / (sum(alone) / m):7.2f} (per core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build benchmark (not part of CI): the build's cost per case against its floor and against nnU-Net.

Run from the repository root with the main environment:

    ~/.cache/hcc-shards/envs/main/bin/python benchmarks/build_bench.py

On full-size synthetic cases (benchmarks/bench_cases.py: 512 x 512 slices, ``--slices`` of them,
default 90 and 180, at 2.5 x 0.70 x 0.70 mm; one CT series and its SEG each), in one run:

- ``ours``: the build's per-case path, one stage after the other in a fresh process that has
  first built the same case once (a worker's steady state: lazy imports, pixel decoders, codecs and
  fonts loaded): header index of every file (hcc_shards.dicom.index_file), pairing (pair_patient),
  CT pixel read and decode (decode_ct), SEG decode (decode_labels), image resampling
  (resample_image), label resampling (resample_label), write (write_case: class locations,
  checksum, Zarr shards, QC image, marker), commit (commit_dataset, once per build, so reported
  apart from the per-case total). Medians over ``--repeats`` fresh processes.
- ``floor``: pydicom reading the same CT files and converting them to HU (int16), nothing else.
- ``nnunet``: SimpleITK reading the CT series, nnunetv2's own resampling
  (resample_data_or_seg_to_shape: order 3 image, order 1 one-hot segmentation, separate z when
  anisotropic) and its blosc2 save (nnUNetDatasetBlosc2.save_case), in the benchmark-only
  environment (benchmarks/setup_bench.sh) through benchmarks/nnunet_path.py; also to 1 mm
  isotropic on the first case (``--iso-spacing``), against ours to the same spacing.
- ``memory``: what a worker adds per case: peak resident memory of the process during the case
  minus its resident memory before it (VmHWM reset through /proc/self/clear_refs), and the
  tracemalloc peak per stage, against the raw CT size (slices x 512 x 512 x 2 bytes).
- ``store``: CT read + decode of the first case through an S3 emulator (moto_server on
  127.0.0.1), files fetched one after the other vs with decode_ct's read-ahead threads.
- ``pipeline`` (``--pipeline-cases N``, default 48): ``python -m pipelines.build`` over N copies of
  the first case (distinct patients and UIDs), and over the first N/3 of them, on DirectRunner with
  1 and 2 workers and on DaskRunner with a LocalCluster of 1 and 2 worker processes; cases per
  minute from the build's own wall time (its summary): whole (N / T(N)) and marginal
  ((N - N/3) / (T(N) - T(N/3)), without the runner's fixed cost).

Every process runs one thread of numeric work (OMP/BLAS/ITK/torch/blosc threads set to 1), as
the reference figures of issue 8 were taken. Prints a table (metric, value, target, ratio, pass)
and writes the raw numbers as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLOSC_NTHREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1",
    "nnUNet_n_proc_DA": "1",
}
STAGES = (
    "index",
    "pair",
    "ct_decode",
    "seg_decode",
    "image_resample",
    "label_resample",
    "write",
    "commit",
)


# -- measurements, each in a fresh process ----------------------------------------------------


def _rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_ours(case_dir: Path, out_dir: Path, spacing: tuple[float, float, float], memory: bool) -> dict:
    """Our per-case path, stage by stage; returns seconds per stage (and memory when asked)."""
    import tracemalloc

    import numpy as np

    from hcc_shards.case import Case
    from hcc_shards.config import BuildConfig
    from hcc_shards.dicom import decode_labels, index_file, pair_patient
    from hcc_shards.dicom.ct import decode_ct
    from hcc_shards.dicom.decode import provenance_of, qc_flags
    from hcc_shards.resample import resample_image, resample_label, target_geometry
    from hcc_shards.shards import commit_dataset, split_for_patient, version_url, write_case

    config = BuildConfig(target_spacing=spacing)
    urls = [*sorted(str(p) for p in (case_dir / "ct").iterdir()), str(case_dir / "seg.dcm")]
    shutil.rmtree(out_dir, ignore_errors=True)
    # A worker's steady state: the same case once before, outside the timing, so that lazy imports
    # (pixel decoders, codecs, matplotlib fonts) and first-call costs are not counted per case.
    _warm(case_dir, config, spacing, out_dir.with_name(out_dir.name + "-warm"))
    np.zeros(1)
    base_rss = _rss_now()
    hwm_reset = _reset_hwm() if memory else False
    if memory:
        tracemalloc.start()
    t: dict[str, float] = {}
    peaks: dict[str, int] = {}

    def mark(stage: str) -> None:
        if memory:
            peaks[stage] = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()

    t0 = time.perf_counter()
    headers = [index_file(u, None, config) for u in urls]
    t1 = time.perf_counter()
    t["index"] = t1 - t0
    mark("index")
    pairings, records = pair_patient(headers, config)
    if len(pairings) != 1:
        raise RuntimeError(f"{case_dir}: expected one pairing, got {len(pairings)} and records {records}")
    pairing = pairings[0]
    t2 = time.perf_counter()
    t["pair"] = t2 - t1
    mark("pair")
    image = decode_ct(pairing.ct_headers, pairing.slices, config)
    t3 = time.perf_counter()
    t["ct_decode"] = t3 - t2
    mark("ct_decode")
    label, seg_warnings = decode_labels(pairing, config)
    case = Case(
        image=image,
        label=label,
        geometry=pairing.geometry,
        provenance=provenance_of(pairing),
        warnings=pairing.warnings + seg_warnings,
        unknown_segments=pairing.unknown_segments,
        qc_flags=qc_flags(label),
    )
    t4 = time.perf_counter()
    t["seg_decode"] = t4 - t3
    mark("seg_decode")
    target = target_geometry(case.geometry, spacing)
    new_image = resample_image(
        case.image,
        case.geometry,
        target,
        kind=config.image_interpolation,
        anisotropy=config.anisotropy_threshold,
        clip=config.hu_clip,
    )
    t5 = time.perf_counter()
    t["image_resample"] = t5 - t4
    mark("image_resample")
    new_label = resample_label(case.label, case.geometry, target, kind=config.label_interpolation)
    t6 = time.perf_counter()
    t["label_resample"] = t6 - t5
    mark("label_resample")
    case = case.with_arrays(new_image, new_label, target)
    del image, label, new_image, new_label
    vurl = version_url(str(out_dir), config)
    split = split_for_patient(case.provenance.patient_id, config.seed, config.split_fractions)
    row = write_case(case, vurl, config, split=split)
    t7 = time.perf_counter()
    t["write"] = t7 - t6
    mark("write")
    commit_dataset(str(out_dir), [row], records, config, {"name": "build benchmark"})
    t8 = time.perf_counter()
    t["commit"] = t8 - t7
    mark("commit")
    # Per case: everything but the commit, which a build runs once for all its cases.
    t["total"] = t7 - t0
    result: dict = {"seconds": t, "shape_out": list(case.geometry.shape)}
    if memory:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["tracemalloc_peak"] = max(peak, *peaks.values())
        result["tracemalloc_peak_by_stage"] = peaks
        result["rss_added"] = _hwm() - base_rss if hwm_reset else None
    return result


def _warm(case_dir: Path, config, spacing, out_dir: Path) -> None:
    from hcc_shards.dicom import decode_pairing, index_file, pair_patient
    from hcc_shards.resample import resample_case
    from hcc_shards.shards import commit_dataset, version_url, write_case

    urls = [*sorted(str(p) for p in (case_dir / "ct").iterdir()), str(case_dir / "seg.dcm")]
    pairings, records = pair_patient([index_file(u, None, config) for u in urls], config)
    case = resample_case(decode_pairing(pairings[0], config), spacing, config)
    row = write_case(case, version_url(str(out_dir), config), config, split="train")
    commit_dataset(str(out_dir), [row], records, config, {"name": "warm-up"})
    shutil.rmtree(out_dir, ignore_errors=True)


def run_floor(case_dir: Path) -> dict:
    """pydicom reads every CT file of the case and converts it to int16 HU; nothing else."""
    import numpy as np
    import pydicom

    files = sorted((case_dir / "ct").iterdir())
    _ = pydicom.dcmread(files[0]).pixel_array  # the pixel decoder's import, once per process
    t0 = time.perf_counter()
    slices = []
    for f in files:
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append(hu.astype(np.int16))
    volume = np.stack(slices)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "shape": list(volume.shape)}


def _child(kind: str, args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter of this environment; returns its JSON."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, __file__, f"_{kind}", *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_python() -> str | None:
    """The benchmark env's interpreter (built on first use), or None when it cannot be built."""
    out = subprocess.run(["bash", str(HERE / "setup_bench.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"benchmark env unavailable, nnU-Net path skipped:\n{out.stderr[-1500:]}", flush=True)
        return None
    return out.stdout.strip().splitlines()[-1]


def run_nnunet(python: str, job: dict) -> dict:
    env = {**os.environ, **ONE_THREAD}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [python, str(HERE / "nnunet_path.py"), json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def export_label(case_dir: Path, spacing: tuple[float, float, float]) -> Path:
    """The case's decoded label map as .npy (input of the nnU-Net path: its SEG decode is not timed)."""
    path = case_dir / "label.npy"
    if not path.exists():
        _child("export_label", [str(case_dir), json.dumps(list(spacing))])
    return path


def _export_label(case_dir: Path) -> None:
    import numpy as np

    from hcc_shards.config import BuildConfig
    from hcc_shards.dicom import decode_labels, index_file, pair_patient

    config = BuildConfig()
    urls = [*sorted(str(p) for p in (case_dir / "ct").iterdir()), str(case_dir / "seg.dcm")]
    pairings, _ = pair_patient([index_file(u, None, config) for u in urls], config)
    label, _ = decode_labels(pairings[0], config)
    np.save(case_dir / "label.npy", label)


def run_store(case_dir: Path, repeats: int) -> dict:
    """CT read + decode of the case through an S3 emulator (moto_server on 127.0.0.1), read-ahead on/off."""
    import fsspec

    import hcc_shards.dicom.ct as ct
    from hcc_shards.config import BuildConfig
    from hcc_shards.dicom import index_file, pair_patient

    sys.path.insert(0, str(ROOT / "tests"))
    import emulators

    config = BuildConfig()
    files = [*sorted((case_dir / "ct").iterdir()), case_dir / "seg.dcm"]
    with tempfile.TemporaryDirectory() as tmp, emulators.s3_emulator(Path(tmp)) as em:
        em.make_bucket("bench")
        fs = fsspec.filesystem("s3", **em.storage_options)
        fs.pipe({f"bench/case/{f.relative_to(case_dir)}": f.read_bytes() for f in files})
        urls = [f"s3://bench/case/{f.relative_to(case_dir)}" for f in files]
        so = em.storage_options
        pairing = pair_patient([index_file(u, so, config) for u in urls], config)[0][0]
        default = ct.READ_AHEAD
        out: dict = {"serial": [], "read_ahead": [], "window": default}
        for _ in range(repeats):
            for key, window in (("serial", 1), ("read_ahead", default)):
                ct.READ_AHEAD = window
                t0 = time.perf_counter()
                ct.decode_ct(pairing.ct_headers, pairing.slices, config, so)
                out[key].append(time.perf_counter() - t0)
        ct.READ_AHEAD = default
    return out


# -- the pipeline ---------------------------------------------------------------------------------


def run_pipeline(input_dir: Path, out_dir: Path, spacing, runner: str, workers: int) -> dict:
    """``hcc-shards build`` end to end; returns wall seconds and the build's summary."""
    shutil.rmtree(out_dir, ignore_errors=True)
    argv = [
        sys.executable,
        "-m",
        "pipelines.build",
        f"--input={input_dir}",
        f"--output={out_dir}",
        "--spacing=" + ",".join(str(v) for v in spacing),
    ]
    cluster = None
    if runner == "direct":
        argv += ["--runner=DirectRunner", f"--direct_num_workers={workers}"]
        if workers > 1:
            argv += ["--direct_running_mode=multi_processing"]
        else:
            argv += ["--direct_running_mode=in_memory"]
    else:
        import dask
        from distributed import LocalCluster

        from pipelines.beam.runners import dask_worker_config

        # The workers as docs/RUNNERS.md deploys them (glibc malloc thresholds, pipelines/dask).
        with dask.config.set(dask_worker_config()):
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        argv += ["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
        seconds = time.perf_counter() - t0
    finally:
        if cluster is not None:
            cluster.close()
    if proc.returncode != 0:
        raise RuntimeError(
            f"build failed ({runner}, {workers}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    wall = re.search(r"wall time\s+([0-9.]+) s", proc.stdout)
    return {
        "seconds": seconds,
        "build_seconds": float(wall.group(1)) if wall else None,
        "stdout_tail": proc.stdout[-600:],
    }


# -- report ----------------------------------------------------------------------------------------


def _median(values):
    return statistics.median(values) if values else float("nan")


def _row(metric: str, value: str, target: str, ratio: float | None, ok: bool | None) -> tuple:
    r = "" if ratio is None else f"{ratio:.2f}"
    verdict = "" if ok is None else ("pass" if ok else "FAIL")
    return (metric, value, target, r, verdict)


def print_table(rows: list[tuple]) -> None:
    head = ("metric", "value", "target", "ratio", "pass")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(5)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", default="90,180", help="slice counts of the cases, comma separated")
    p.add_argument("--dz", type=float, default=2.5)
    p.add_argument("--dxy", type=float, default=0.70)
    p.add_argument("--spacing", default="2.5,0.78,0.78", help="target spacing z,y,x mm")
    p.add_argument("--iso-spacing", default="1,1,1", help="second nnU-Net target (90-slice case); '' to skip")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--nnunet-repeats", type=int, default=3)
    p.add_argument("--no-nnunet", action="store_true")
    p.add_argument(
        "--no-store", dest="store", action="store_false", help="skip the S3-emulator read-ahead measurement"
    )
    p.add_argument("--pipeline-cases", type=int, default=48, help="cases of the pipeline runs; 0 to skip")
    p.add_argument("--pipeline-only", action="store_true", help="only the pipeline runs")
    p.add_argument("--workdir", default=None, help="cases are kept here between runs (default: a temp dir)")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    args = p.parse_args(argv)

    spacing = tuple(float(v) for v in args.spacing.split(","))
    slice_counts = [int(v) for v in args.slices.split(",") if v]
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "hcc-shards-build-bench")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; workdir {workdir}", flush=True)

    sys.path.insert(0, str(HERE))
    import bench_cases

    results: dict = {"spacing": spacing, "cases": {}, "load_start": os.getloadavg()}
    rows: list[tuple] = []
    py_bench = None if args.no_nnunet or args.pipeline_only else bench_python()
    for n in slice_counts if not args.pipeline_only else slice_counts[:0]:
        case_dir = workdir / f"case{n}"
        info = bench_cases.write_case(case_dir, seed=0, index=9, slices=n, dz=args.dz, dxy=args.dxy)
        name = f"{n}x512x512"
        print(f"\n== case {name} at {args.dz} x {args.dxy} x {args.dxy} mm -> {spacing}", flush=True)
        _child("floor", [str(case_dir)])  # page cache warm for every variant
        res: dict = {"info": info, "ours": [], "floor": [], "memory": None, "nnunet": [], "nnunet_iso": []}
        out_dir = workdir / f"out{n}"
        for _ in range(args.repeats):
            res["floor"].append(_child("floor", [str(case_dir)])["seconds"])
            res["ours"].append(_child("ours", [str(case_dir), str(out_dir), json.dumps(spacing), "0"]))
        res["memory"] = _child("ours", [str(case_dir), str(out_dir), json.dumps(spacing), "1"])
        if args.iso_spacing and n == slice_counts[0]:
            iso = [float(v) for v in args.iso_spacing.split(",")]
            res["ours_iso"] = [
                _child("ours", [str(case_dir), str(out_dir), json.dumps(iso), "0"]) for _ in range(2)
            ]
        if args.store and n == slice_counts[0]:
            res["store"] = _child("store", [str(case_dir), "3"])
        if py_bench:
            label = export_label(case_dir, spacing)
            job = {
                "ct_dir": str(case_dir / "ct"),
                "label": str(label),
                "spacing": list(spacing),
                "out": str(workdir / f"nnunet{n}"),
            }
            res["nnunet"] = [run_nnunet(py_bench, job) for _ in range(args.nnunet_repeats)]
            if args.iso_spacing and n == slice_counts[0]:
                iso = [float(v) for v in args.iso_spacing.split(",")]
                res["nnunet_iso"] = [run_nnunet(py_bench, {**job, "spacing": iso}) for _ in range(2)]
        results["cases"][name] = res
        _report_case(name, res, rows)
        shutil.rmtree(out_dir, ignore_errors=True)

    first = results["cases"].get(f"{slice_counts[0]}x512x512") if slice_counts else None
    args.floor_seconds = first["floor"] if first else []
    if args.pipeline_cases:
        results["pipeline"] = _pipeline_runs(workdir, args, spacing, bench_cases, rows)

    results["load_end"] = os.getloadavg()
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (2 = both cores busy)")
    print()
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


def _report_case(name: str, res: dict, rows: list[tuple]) -> None:
    med = {s: _median([r["seconds"][s] for r in res["ours"]]) for s in (*STAGES, "total")}
    floor = _median(res["floor"])
    print(f"floor (pydicom read + HU): {floor:.3f} s  runs {[round(v, 3) for v in res['floor']]}")
    for s in (*STAGES, "total"):
        runs = [round(r["seconds"][s], 3) for r in res["ours"]]
        print(f"  ours {s:<15} {med[s]:7.3f} s  runs {runs}")
    mem = res["memory"]
    raw = res["info"]["raw_ct_bytes"]
    rss = mem.get("rss_added")
    by_stage = ", ".join(f"{k} {v / 1e6:.0f}" for k, v in mem.get("tracemalloc_peak_by_stage", {}).items())
    print(f"  tracemalloc peak by stage (MB, incl. what is held): {by_stage}")
    print(
        f"  memory added per case: rss {rss / 1e6 if rss else float('nan'):.0f} MB, tracemalloc peak "
        f"{mem['tracemalloc_peak'] / 1e6:.0f} MB; raw CT {raw / 1e6:.0f} MB"
    )
    total = med["total"]
    rows.append(
        _row(
            f"{name} end to end / floor",
            f"{total:.3f} s vs {floor:.3f} s",
            "<= 2",
            total / floor,
            total / floor <= 2,
        )
    )
    rate = 60 / total
    rows.append(
        _row(
            f"{name} cases/min vs floor/2",
            f"{rate:.1f} vs {60 / floor / 2:.1f}",
            ">= 1",
            rate / (60 / floor / 2),
            rate >= 60 / floor / 2,
        )
    )
    used = rss if rss else mem["tracemalloc_peak"]
    rows.append(
        _row(
            f"{name} memory added / raw CT",
            f"{used / 1e6:.0f} MB vs {raw / 1e6:.0f} MB",
            "<= 3",
            used / raw,
            used <= 3 * raw,
        )
    )
    if res["nnunet"]:
        nn = {k: _median([r[k] for r in res["nnunet"]]) for k in res["nnunet"][0] if k != "shape_out"}
        print(
            "  nnU-Net: "
            + ", ".join(
                f"{k} {v:.3f} s" if "rss" not in k else f"{k} {v / 1e6:.0f} MB" for k, v in nn.items()
            )
        )
        rows.append(
            _row(
                f"{name} nnU-Net path / ours",
                f"{nn['total']:.2f} s vs {total:.3f} s",
                ">= 10",
                nn["total"] / total,
                nn["total"] / total >= 10,
            )
        )
        resample_ours = med["image_resample"] + med["label_resample"]
        rows.append(
            _row(
                f"{name} nnU-Net resampling / ours",
                f"{nn['resample']:.2f} s vs {resample_ours:.3f} s",
                "(info)",
                nn["resample"] / resample_ours,
                None,
            )
        )
    commit = _median([r["seconds"]["commit"] for r in res["ours"]])
    rows.append(_row(f"{name} commit (once per build)", f"{commit:.3f} s", "(info)", None, None))
    if res.get("store"):
        st = res["store"]
        serial, ahead = _median(st["serial"]), _median(st["read_ahead"])
        print(
            f"  CT read + decode via S3 emulator: serial {serial:.3f} s, read-ahead {st['window']} {ahead:.3f} s"
        )
        rows.append(
            _row(
                f"{name} CT decode via S3 emulator, serial / read-ahead",
                f"{serial:.3f} s vs {ahead:.3f} s",
                "(info)",
                serial / ahead,
                None,
            )
        )
    if res["nnunet_iso"]:
        nn_iso = _median([r["total"] for r in res["nnunet_iso"]])
        rs_iso = _median([r["resample"] for r in res["nnunet_iso"]])
        pk = _median([r["rss_added"] for r in res["nnunet_iso"]])
        if res.get("ours_iso"):
            ours_iso = _median([r["seconds"]["total"] for r in res["ours_iso"]])
            rs_ours = _median(
                [r["seconds"]["image_resample"] + r["seconds"]["label_resample"] for r in res["ours_iso"]]
            )
            print(f"  ours to 1 mm isotropic: per case {ours_iso:.3f} s, resampling {rs_ours:.3f} s")
            rows.append(
                _row(
                    f"{name} to 1 mm iso: nnU-Net path / ours",
                    f"{nn_iso:.2f} s vs {ours_iso:.3f} s",
                    ">= 10",
                    nn_iso / ours_iso,
                    nn_iso / ours_iso >= 10,
                )
            )
        print(
            f"  nnU-Net to 1 mm isotropic: total {nn_iso:.2f} s, resampling {rs_iso:.2f} s, peak added {pk / 1e6:.0f} MB"
        )


def _pipeline_runs(workdir: Path, args, spacing, bench_cases, rows: list[tuple]) -> dict:
    """The Beam build over N and N/3 cases (copies of the first case) on 1 and 2 workers of each runner.

    Cases per minute of a large cohort is the marginal rate, (N - N/3) / (T(N) - T(N/3)): the
    runner's fixed cost (start-up, listing, scheduling, commit) cancels out. The whole-build rate
    T(N) / N is reported as well.
    """
    n = args.pipeline_cases
    small = max(1, n // 3)
    slices = int(args.slices.split(",")[0])
    cohort = bench_cases.write_cohort(workdir, n, slices=slices, dz=args.dz, dxy=args.dxy).parent
    subset = workdir / f"cohort{slices}x{n}-first{small}-files"
    for k in range(small):
        if not (subset / f"P{k:03d}" / "seg.dcm").exists():
            # Hard links: the listing sees plain files (it does not follow directory symlinks).
            shutil.copytree(cohort / "input" / f"P{k:03d}", subset / f"P{k:03d}", copy_function=os.link)
    out: dict = {}
    for runner, workers in (("direct", 1), ("direct", 2), ("dask", 1), ("dask", 2)):
        key = f"{runner}{workers}"
        try:
            big = run_pipeline(cohort / "input", workdir / "pipeline-out", spacing, runner, workers)
            few = run_pipeline(subset, workdir / "pipeline-out", spacing, runner, workers)
        except RuntimeError as exc:
            print(f"pipeline {runner} x{workers} failed: {str(exc)[-1500:]}", flush=True)
            out[key] = {"error": str(exc)[-3000:]}
            continue
        t_big = big["build_seconds"] or big["seconds"]
        t_few = few["build_seconds"] or few["seconds"]
        out[key] = {
            "n": n,
            "small": small,
            "big": big,
            "few": few,
            "whole_rate": 60 * n / t_big,
            # No marginal rate when the larger build was not slower (too few cases for the noise).
            "marginal_rate": 60 * (n - small) / (t_big - t_few) if t_big > t_few else float("nan"),
        }
        print(
            f"pipeline {runner} x{workers}: {n} cases in {t_big:.1f} s, {small} in {t_few:.1f} s (the build's "
            f"own wall time; whole process {big['seconds']:.1f} s): {out[key]['whole_rate']:.1f} cases/min "
            f"whole, {out[key]['marginal_rate']:.1f} cases/min marginal",
            flush=True,
        )
    shutil.rmtree(workdir / "pipeline-out", ignore_errors=True)
    floor = _median(args.floor_seconds) if args.floor_seconds else None
    one = out.get("direct1", {})
    if floor and "whole_rate" in one:
        half = 60 / floor / 2
        for kind in ("whole", "marginal"):
            rate = one[f"{kind}_rate"]
            rows.append(
                _row(
                    f"build, {n} cases, DirectRunner 1 worker, {kind}: cases/min vs floor/2",
                    f"{rate:.1f} vs {half:.1f}",
                    ">= 1",
                    rate / half,
                    rate >= half,
                )
            )
    for runner in ("direct", "dask"):
        one, two = out[f"{runner}1"], out[f"{runner}2"]
        if "whole_rate" not in one or "whole_rate" not in two:
            rows.append(
                _row(f"{runner} 2 workers / 1 worker (cases/min)", "build failed", ">= 1.7", None, False)
            )
            continue
        for kind in ("whole", "marginal"):
            r1, r2 = one[f"{kind}_rate"], two[f"{kind}_rate"]
            target = ">= 1.7" if runner == "dask" and kind == "whole" else "(info)"
            rows.append(
                _row(
                    f"{runner} 2 workers / 1 worker, {kind} (cases/min)",
                    f"{r2:.1f} vs {r1:.1f}",
                    target,
                    r2 / r1,
                    r2 / r1 >= 1.7 if target != "(info)" else None,
                )
            )
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        sys.path.insert(0, str(ROOT))
        kind, rest = sys.argv[1], sys.argv[2:]
        if kind == "_ours":
            sp = tuple(json.loads(rest[2]))
            out = run_ours(Path(rest[0]), Path(rest[1]), sp, rest[3] == "1")
        elif kind == "_store":
            out = run_store(Path(rest[0]), int(rest[1]))
        elif kind == "_floor":
            out = run_floor(Path(rest[0]))
        elif kind == "_export_label":
            _export_label(Path(rest[0]))
            out = {}
        else:
            raise SystemExit(f"unknown measurement {kind}")
        print(json.dumps(out))
        sys.exit(0)
    sys.exit(main())

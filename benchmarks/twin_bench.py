"""Twin benchmark (not part of CI): generate the IDC twin of HCC-TACE-Seg, plan it, build it, check it.

Run from the repository root with the main environment (heavy: run it alone, in the background):

    nice -n 10 ~/.cache/hcc-shards/envs/main/bin/python benchmarks/twin_bench.py --work /tmp/twin-bench

Three timed steps, each an ``hcc-shards`` process of its own:

1. ``generate``: ``hcc-shards synth WORK/dicom --twin SOURCE --truth WORK/truth.json --workers N``.
   With ``--reuse DIR`` a twin already generated under ``DIR`` (``DIR/dicom``, ``DIR/truth.json``) is
   used instead when its truth is the twin of the same source, seed and pixel size; generation is then
   not timed (the number is the one its generation printed, in ``DIR/gen.log`` when there is one).
2. ``plan``: ``hcc-shards plan DICOM --json``: the dry run (list, read headers, pair, decode every SEG).
3. ``build``: ``hcc-shards build DICOM WORK/out --runner DirectRunner --workers 2 --quiet``
   (``--build-workers``), the build's default target spacing.

Then both the plan's case records and the build's manifest are checked against the truth, SEG by
SEG: every SEG of the truth is exactly one case, on the CT series the truth says, with the expected
annotation_source; counts by source are printed. ``--patients N`` makes the twin of the index's
first N patients only (``idc://hcc_tace_seg?patients=HCC_001,...``) for a quicker run. Results go to
``WORK/twin_bench.json``; the exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hcc_shards.synth.twin import TwinTruth, load_twin_truth  # noqa: E402


def hcc_shards(*argv: str) -> tuple[float, str]:
    """Run ``hcc-shards ARGV`` from the repository; (wall seconds, stdout). Raises on failure."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hcc_shards.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"hcc-shards {' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return seconds, proc.stdout


def twin_source(collection: str, patients: int | None) -> str:
    """The ``idc://`` URL of the twin: the whole collection, or its first ``patients`` patients."""
    if patients is None:
        return f"idc://{collection}"
    ids = ",".join(f"HCC_{i:03d}" for i in range(1, patients + 1))
    return f"idc://{collection}?patients={ids}"


def reusable(folder: Path, source: str, seed: int, pixels: int) -> TwinTruth | None:
    """The truth of a twin under ``folder`` made from ``source`` with ``seed`` and ``pixels``, else None."""
    path = folder / "truth.json"
    if not path.exists() or not (folder / "dicom").is_dir():
        return None
    truth = load_twin_truth(str(path))
    if (truth.source, truth.seed, truth.pixels) != (source, seed, pixels):
        return None
    return truth


def recorded_generation_seconds(folder: Path) -> float | None:
    """The seconds ``hcc-shards synth --twin`` printed for a reused twin (``gen.log``), if kept."""
    log = folder / "gen.log"
    if not log.exists():
        return None
    found = re.search(r"in ([0-9.]+) s \(\d+ worker", log.read_text())
    return float(found.group(1)) if found else None


def check_cases(cases: list[dict[str, Any]], truth: TwinTruth, what: str) -> list[str]:
    """Every SEG of the truth is one case on its CT series with its source; the problems found."""
    problems: list[str] = []
    by_seg = Counter(c["seg_series_instance_uid"] for c in cases)
    twice = sorted(uid for uid, n in by_seg.items() if n > 1)
    if twice:
        problems.append(f"{what}: {len(twice)} SEG series are more than one case, e.g. {twice[:3]}")
    found = {c["seg_series_instance_uid"]: c for c in cases}
    for seg in truth.segs:
        case = found.get(seg.seg_series_instance_uid)
        if case is None:
            problems.append(f"{what}: SEG {seg.seg_series_instance_uid} ({seg.patient_id}) is not a case")
            continue
        if case["ct_series_instance_uid"] != seg.ct_series_instance_uid:
            problems.append(f"{what}: SEG {seg.seg_series_instance_uid} on another CT series")
        if case["annotation_source"] != seg.expected_annotation_source:
            problems.append(
                f"{what}: SEG {seg.seg_series_instance_uid} is {case['annotation_source']!r}, "
                f"expected {seg.expected_annotation_source!r}"
            )
    extra = set(found) - {s.seg_series_instance_uid for s in truth.segs}
    if extra:
        problems.append(f"{what}: {len(extra)} cases of SEGs the truth does not know")
    return problems


def committed_version(out: Path) -> Path:
    """The folder of the version ``LATEST.json`` points at (docs/FORMAT.md)."""
    return out / json.loads((out / "LATEST.json").read_text())["path"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for the twin, plan output and build")
    ap.add_argument("--collection", default="hcc_tace_seg")
    ap.add_argument("--patients", type=int, default=None, help="only the first N patients of the index")
    ap.add_argument("--reuse", type=Path, default=None, help="a folder holding dicom/ and truth.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pixels", type=int, default=32)
    ap.add_argument("--gen-workers", type=int, default=2)
    ap.add_argument("--build-workers", type=int, default=2)
    ap.add_argument("--skip-build", action="store_true", help="generate and plan only")
    args = ap.parse_args(argv)

    source = twin_source(args.collection, args.patients)
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"source": source, "seed": args.seed, "pixels": args.pixels}

    truth = reusable(args.reuse, source, args.seed, args.pixels) if args.reuse else None
    if truth is not None:
        dicom = args.reuse / "dicom"
        result["generate"] = {"reused": str(args.reuse), "seconds": recorded_generation_seconds(args.reuse)}
    else:
        dicom = args.work / "dicom"
        shutil.rmtree(dicom, ignore_errors=True)
        truth_path = args.work / "truth.json"
        seconds, _ = hcc_shards(
            "synth", str(dicom), "--twin", source, "--truth", str(truth_path),
            "--workers", str(args.gen_workers), "--seed", str(args.seed), "--pixels", str(args.pixels),
        )  # fmt: skip
        truth = load_twin_truth(str(truth_path))
        result["generate"] = {"seconds": round(seconds, 1), "workers": args.gen_workers}
    result["truth"] = truth.totals()
    print(f"twin: {json.dumps(result['truth'])}  generate: {json.dumps(result['generate'])}", flush=True)

    seconds, stdout = hcc_shards("plan", str(dicom), "--json")
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    cases = [r for r in records if r["kind"] == "case"]
    summary = next(r for r in records if r["kind"] == "summary")
    problems = check_cases(cases, truth, "plan")
    result["plan"] = {
        "seconds": round(seconds, 1),
        "cases": len(cases),
        "by_source": dict(sorted(Counter(c["annotation_source"] for c in cases).items())),
        "quarantined": summary["quarantined"],
        "by_reason": summary["by_reason"],
    }
    print(f"plan: {json.dumps(result['plan'])}", flush=True)

    if not args.skip_build:
        out = args.work / "out"
        shutil.rmtree(out, ignore_errors=True)
        seconds, _ = hcc_shards(
            "build", str(dicom), str(out), "--runner", "DirectRunner",
            "--workers", str(args.build_workers), "--quiet",
        )  # fmt: skip
        version = committed_version(out)
        rows = pq.read_table(version / "manifest.parquet").to_pylist()
        problems += check_cases(rows, truth, "build")
        images = {r["image_id"] for r in rows}
        stored = {p.name for p in (version / "images").iterdir()} if (version / "images").is_dir() else set()
        result["build"] = {
            "seconds": round(seconds, 1),
            "workers": args.build_workers,
            "cases": len(rows),
            "images": len(images),
            "image_groups": len(stored),
            "by_source": dict(sorted(Counter(r["annotation_source"] for r in rows).items())),
        }
        if images != stored:
            problems.append(f"build: {len(images)} image ids in the manifest, {len(stored)} image groups")
        print(f"build: {json.dumps(result['build'])}", flush=True)

    result["problems"] = problems
    (args.work / "twin_bench.json").write_text(json.dumps(result, indent=1) + "\n")
    for p in problems[:50]:
        print(f"PROBLEM {p}")
    print(f"{'OK' if not problems else 'FAILED'}: results in {args.work / 'twin_bench.json'}")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())

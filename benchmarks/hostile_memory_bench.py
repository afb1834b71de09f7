"""Peak memory of a deflate bomb against a healthy case: index, pair and decode in a fresh process.

python benchmarks/hostile_memory_bench.py --inflated-mib 1024

Generates one synthetic patient, copies it, turns the copy's scout into a deflate bomb (the
``deflate_bomb`` fault, its private element ``--inflated-mib`` of zeros), and runs the probe below
in a fresh interpreter over each tree: every file indexed (``index_file``), the patient paired
and decoded (``decode_or_record``), and every file the index refused as ``too_large`` read again
in full (``read_dataset``, the decode stage's read), which must refuse it too. The probe prints its
peak RSS (VmHWM, :func:`peak_rss_mib`). ``--unprotected`` adds a third run: ``pydicom.dcmread``
of the bomb, what a read without the limit costs. The bomb must stay under 3x the healthy peak
(tests/reliability/test_hostile_memory.py runs the small case with a 1 GiB bomb).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATIO_BOUND = 3.0
"""The bomb's peak RSS must stay below this multiple of the healthy case's."""


def probe(root: str, unprotected: bool = False) -> dict:
    """What one fresh process spends on ``root``: index, pair, decode; or pydicom alone on every file."""
    from hcc_shards.build.listing import list_input
    from hcc_shards.config import BuildConfig
    from hcc_shards.dicom import InstanceHeader, decode_or_record, index_file, pair_patient
    from hcc_shards.dicom.ct import read_dataset
    from hcc_shards.errors import QuarantineError
    from hcc_shards.quarantine import QuarantineRecord, Reason

    start = time.perf_counter()
    objects = [(r.url, r.size) for r in list_input(root)]
    if unprotected:
        import pydicom

        for url, _ in objects:
            pydicom.dcmread(url)
        return _result(start, files=len(objects))
    config = BuildConfig()
    indexed = [index_file(url, None, config, size=size) for url, size in objects]
    records = [r for r in indexed if isinstance(r, QuarantineRecord)]
    by_patient: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in indexed:
        if isinstance(h, InstanceHeader):
            by_patient[h.patient_id].append(h)
    cases = 0
    for patient in sorted(by_patient):
        pairings, recs = pair_patient(by_patient[patient], config)
        records.extend(recs)
        for pairing in pairings:
            out = decode_or_record(pairing, config)
            if isinstance(out, QuarantineRecord):
                records.append(out)
            else:
                cases += 1
    refused = 0
    for r in records:
        if r.code == Reason.FILE_TOO_LARGE.value:
            try:
                read_dataset(r.url)
            except QuarantineError as exc:
                refused += exc.code == Reason.FILE_TOO_LARGE.value
    codes = dict(Counter(r.code for r in records))
    return _result(start, files=len(objects), cases=cases, codes=codes, decode_refused=refused)


def _result(start: float, **facts: object) -> dict:
    return {
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "seconds": round(time.perf_counter() - start, 2),
        **facts,
    }


def peak_rss_mib() -> float:
    """Peak RSS of this process image: VmHWM, which starts afresh at exec. Linux keeps ``ru_maxrss``
    across fork and exec, so under a large parent (pytest, 770 MiB in a full run) it reports the
    parent's size; ``ru_maxrss`` only where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_probe(root: str, unprotected: bool = False) -> dict:
    """:func:`probe` in a fresh interpreter (imports included in its peak)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--probe", root]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run(
        argv + (["--unprotected"] if unprotected else []),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode:
        raise RuntimeError(f"probe of {root} exited {out.returncode}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_trees(base: Path, size: str, inflated: int) -> tuple[str, str, str]:
    """(healthy tree, the same with its scout a deflate bomb, the bomb file's path)."""
    from hcc_shards.synth import generate_cohort
    from hcc_shards.synth.bomb import BOMB_INFLATED_BYTES, deflate_bomb_bytes
    from hcc_shards.synth.faults import Fault, inject_faults

    healthy, bombed = base / "healthy", base / "bomb"
    truth = generate_cohort(str(healthy), patients=1, size=size, seed=0, workers=1)
    shutil.copytree(healthy, bombed)
    (fault,) = inject_faults(str(bombed), truth, {truth.patients[0].patient_id: Fault.DEFLATE_BOMB})
    bomb = bombed / fault.path
    if inflated != BOMB_INFLATED_BYTES:
        import pydicom

        bomb.write_bytes(deflate_bomb_bytes(pydicom.dcmread(healthy / fault.path), inflated))
    return str(healthy), str(bombed), str(bomb)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inflated-mib", type=int, default=1024, help="zero bytes of the bomb's private element")
    ap.add_argument("--size", choices=("small", "full"), default="small", help="synthetic patient size")
    ap.add_argument("--unprotected", action="store_true", help="also time pydicom.dcmread of the bomb alone")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.unprotected)))
        return 0
    with tempfile.TemporaryDirectory(prefix="hcc-shards-hostile-") as tmp:
        healthy, bombed, bomb = make_trees(Path(tmp), args.size, args.inflated_mib * 1024 * 1024)
        a, b = run_probe(healthy), run_probe(bombed)
        print(f"bomb file: {os.path.getsize(bomb)} bytes, inflating to {args.inflated_mib} MiB")
        print(f"healthy: {json.dumps(a)}")
        print(f"bomb:    {json.dumps(b)}")
        ratio = b["peak_rss_mib"] / a["peak_rss_mib"]
        print(f"bomb / healthy peak RSS: {ratio:.2f} (bound {RATIO_BOUND})")
        if args.unprotected:
            lone = Path(tmp) / "lone"
            lone.mkdir()
            shutil.copy(bomb, lone / "bomb.dcm")
            print(f"pydicom.dcmread of the bomb alone: {json.dumps(run_probe(str(lone), unprotected=True))}")
    return 0 if ratio < RATIO_BOUND else 1


if __name__ == "__main__":
    raise SystemExit(main())

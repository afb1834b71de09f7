"""Header index time of one folder of DICOM files: ``index_file`` on each, median of several passes.

python benchmarks/index_bench.py /tmp/hcc-shards-build-bench/case90/ct --passes 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcc_shards.dicom import index_file
from hcc_shards.dicom.header import InstanceHeader


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--passes", type=int, default=7)
    args = ap.parse_args()
    files = sorted(str(p) for p in Path(args.folder).iterdir() if p.is_file())
    first = [index_file(f) for f in files]  # warm-up, and every file must index
    bad = [h for h in first if not isinstance(h, InstanceHeader)]
    if bad:
        raise SystemExit(f"{len(bad)} files did not index, e.g. {bad[0]}")
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        for f in files:
            index_file(f)
        times.append(time.perf_counter() - t0)
    print(f"{len(files)} files: median {statistics.median(times):.4f} s per pass of {args.passes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

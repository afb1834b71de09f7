"""Phase-assignment accuracy of ``--phases all`` on a synthetic cohort against the generator's truth.

    PYTHONPATH=. python benchmarks/phases_accuracy.py --patients 24 --work /tmp/phases-bench

Generates the cohort (small size), builds it with ``run_local`` and compares every stored channel's
phase (the annotated image's included) with the phase the generator rendered that series and
acquisition in. Prints one JSON line: channels, correct, accuracy, per true phase, confusions.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import zarr

from hcc_shards.build.local import run_local
from hcc_shards.build.plan import BuildPlan, flag_values
from hcc_shards.synth import generate_cohort
from hcc_shards.synth.plan import plan_patient


def measure(work: Path, patients: int, seed: int, workers: int) -> dict[str, object]:
    shutil.rmtree(work, ignore_errors=True)
    dicom, out = work / "dicom", work / "out"
    generate_cohort(str(dicom), patients=patients, size="small", seed=seed, workers=workers)
    run_local(
        BuildPlan.from_flags(flag_values(input=str(dicom), output=str(out), phases="all")), workers=workers
    )
    truth = {}
    for index in range(1, patients + 1):
        for study in plan_patient(seed, index, "small").studies:
            for series in study.series:
                for acq, phase in series.acquisitions:
                    truth[(series.series_uid, acq)] = phase
    pairs: Counter[tuple[str, str]] = Counter()
    (version,) = (out / "versions").iterdir()
    for path in sorted((version / "images").iterdir()):
        for entry in dict(zarr.open_group(str(path), mode="r").attrs)["hcc_shards"]["phases"]:
            pairs[(truth[(entry["series_instance_uid"], entry["acquisition_number"])], entry["phase"])] += 1
    total = sum(pairs.values())
    right = sum(n for (t, p), n in pairs.items() if t == p)
    return {
        "patients": patients,
        "seed": seed,
        "channels": total,
        "correct": right,
        "accuracy": round(right / total, 4) if total else None,
        "by_true_phase": dict(sorted(Counter({t: n for (t, _), n in pairs.items()}).items())),
        "confusions": {f"{t}->{p}": n for (t, p), n in sorted(pairs.items()) if t != p},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default="/tmp/phases-bench")
    args = parser.parse_args()
    print(json.dumps(measure(Path(args.work), args.patients, args.seed, args.workers)))


if __name__ == "__main__":
    main()

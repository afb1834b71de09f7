"""``hcc-shards demo [DIR]``: the whole product on a small synthetic cohort, end to end.

1. generate ``--patients`` synthetic HCC-TACE-Seg look-alike patients under ``DIR/dicom``
   (kept when ``DIR/truth.json`` already exists, so a rerun resumes);
2. build them with the DirectRunner into ``DIR/dataset`` (all cores);
3. open the dataset with the reader and draw one batch of random patches;
4. print the build summary and where DATASET.md and the QC images are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from hcc_shards.format import CARD_FILE, QC_DIR

DEFAULT_DIR = "demo"
PATCH_SIZE = (16, 48, 48)
BATCH_SIZE = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", metavar="DIR", nargs="?", default=DEFAULT_DIR, help="working folder (default: demo)"
    )
    parser.add_argument("--patients", type=int, default=8, help="synthetic patients (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default 0: all cores)")


def run(args: argparse.Namespace) -> int:
    from hcc_shards.build.launch import configure_logging

    configure_logging(verbose=False)
    root = os.path.abspath(args.dir)
    dicom, dataset, truth_file = (os.path.join(root, p) for p in ("dicom", "dataset", "truth.json"))
    os.makedirs(root, exist_ok=True)
    workers = args.workers or os.cpu_count() or 1
    started = time.perf_counter()

    if os.path.exists(truth_file):
        print(f"[1/4] cohort already generated in {dicom}")
    else:
        from hcc_shards.synth import generate_cohort

        print(f"[1/4] generating {args.patients} synthetic patients in {dicom} ...", flush=True)
        truth = generate_cohort(
            dicom, patients=args.patients, size="small", seed=args.seed, workers=workers, truth_url=truth_file
        )
        print(f"      {truth.files} files, {truth.bytes / 1e6:.1f} MB")

    print(f"[2/4] building {dataset} with the DirectRunner ({workers} worker processes) ...", flush=True)
    from hcc_shards.build.launch import format_summary
    from pipelines.build import run_build

    summary = run_build(
        [
            f"--input={dicom}",
            f"--output={dataset}",
            "--runner=DirectRunner",
            f"--direct_num_workers={workers}",
            "--direct_running_mode=multi_processing" if workers > 1 else "--direct_running_mode=in_memory",
        ]
    )

    print("[3/4] reading a batch of patches with the reader ...", flush=True)
    batch, n_cases = _draw_batch(dataset)
    fg = {int(v): int(c) for v, c in zip(*_unique(batch["label"]), strict=True) if v}
    print(
        f"      {n_cases} cases; batch image {tuple(batch['image'].shape)} {batch['image'].dtype}, "
        f"label {tuple(batch['label'].shape)} {batch['label'].dtype}; foreground voxels by label {fg}"
    )

    print("[4/4] summary", flush=True)
    print(format_summary(summary))
    qc = os.path.join(summary.version_url, QC_DIR)
    pngs = sorted(f for f in os.listdir(qc) if f.endswith(".png")) if os.path.isdir(qc) else []
    print(f"dataset card      {os.path.join(summary.version_url, CARD_FILE)}")
    print(
        f"QC images         {qc}/ ({len(pngs)} PNG: {', '.join(pngs[:3])}{', ...' if len(pngs) > 3 else ''})"
    )
    print(f"demo total        {time.perf_counter() - started:.1f} s")
    return 0 if summary.cases_written + summary.cases_resumed > 0 else 1


def _draw_batch(dataset_url: str):
    from hcc_shards.read import PatchStream, RandomPatches, open_dataset

    ds = open_dataset(dataset_url)
    stream = PatchStream(
        ds,
        RandomPatches(PATCH_SIZE, samples_per_epoch=BATCH_SIZE, foreground_probability=0.5),
        seed=0,
        prefetch=0,
        threads=0,
    )
    batch = next(iter(stream.batches(BATCH_SIZE)))
    return batch, len(ds)


def _unique(a):
    import numpy as np

    return np.unique(a, return_counts=True)


if __name__ == "__main__":  # pragma: no cover
    from hcc_shards.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))

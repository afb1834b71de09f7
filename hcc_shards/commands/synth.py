"""``hcc-shards synth OUT --patients N``: write a synthetic HCC-TACE-Seg look-alike cohort."""

from __future__ import annotations

import argparse
import sys
import time

from hcc_shards.commands import add_storage_options, storage_options_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="root of the DICOM tree: a local path or fsspec URL")
    parser.add_argument("--patients", type=int, required=True, help="number of patients (HCC_001 ...)")
    parser.add_argument(
        "--size",
        choices=("small", "full"),
        default="small",
        help="full: 512x512 slices; small: 64x64 (tests)",
    )
    parser.add_argument("--layout", choices=("tcia", "idc"), default="tcia", help="folder layout")
    parser.add_argument(
        "--seed", type=int, default=0, help="cohort seed; same arguments give identical files"
    )
    parser.add_argument("--truth", metavar="FILE", default=None, help="write the ground-truth JSON here")
    parser.add_argument("--workers", type=int, default=1, help="patients generated in parallel processes")
    parser.add_argument(
        "--faults",
        metavar="NAMES",
        default=None,
        help="damage patients on purpose: 'all' or comma-separated names of hcc_shards.synth.faults.Fault "
        "(one per eligible patient, in order; see docs/RELIABILITY.md)",
    )
    add_storage_options(parser)


def run(args: argparse.Namespace) -> int:
    from hcc_shards.synth import generate_cohort

    options = storage_options_of(args)
    faults = []
    if args.faults:
        from hcc_shards.synth.faults import Fault

        known = [f.value for f in Fault]
        faults = known if args.faults == "all" else [n.strip() for n in args.faults.split(",") if n.strip()]
        unknown = [n for n in faults if n not in known]
        if unknown:
            print(
                f"hcc-shards synth: unknown faults {unknown}; expected 'all' or some of {known}",
                file=sys.stderr,
            )
            return 2
    started = time.perf_counter()
    truth = generate_cohort(
        args.out,
        patients=args.patients,
        size=args.size,
        layout=args.layout,
        seed=args.seed,
        workers=args.workers,
        storage_options=options,
        truth_url=args.truth,
    )
    if faults:
        from hcc_shards.synth.faults import assign_faults, inject_faults

        for f in inject_faults(args.out, truth, assign_faults(truth, faults), options):
            print(f"FAULT {f.patient_id}  {f.fault:<28} -> {f.code} ({f.stage}) {f.path}")
    elapsed = time.perf_counter() - started
    for p in truth.patients:
        seg = "no SEG" if p.seg_sop_instance_uid is None else f"SEG on acquisition {p.ct_acquisition_number}"
        voxels = " ".join(f"{k}={v}" for k, v in p.voxels)
        print(
            f"{p.patient_id}  quirk={p.quirk:<24} series={len(p.series)} files={p.files:<5} "
            f"{p.bytes / 1e6:8.1f} MB {p.seconds:6.1f} s  {seg}  {voxels}"
        )
    n = len(truth.patients)
    print(
        f"wrote {n} patients, {truth.files} files, {truth.bytes / 1e6:.1f} MB to {args.out} in {elapsed:.1f} s "
        f"({truth.bytes / n / 1e6:.1f} MB and {elapsed / n:.1f} s per patient, {args.workers} worker(s))"
        + (f"; truth: {args.truth}" if args.truth else ""),
        file=sys.stdout,
    )
    return 0

"""``hcc-shards synth OUT --patients N``: write a synthetic HCC-TACE-Seg look-alike cohort.

``--edition idc``: the collection as IDC serves it, with AIMI-like SEGs besides the manual one
(hcc_shards.synth.edition).

``hcc-shards synth OUT --twin hcc_tace_seg``: write the twin of an IDC collection instead, every
series of the IDC index with its real identifiers and instance counts (hcc_shards.synth.twin).
"""

from __future__ import annotations

import argparse
import sys
import time

from hcc_shards.commands import add_storage_options, storage_options_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="root of the DICOM tree: a local path or fsspec URL")
    parser.add_argument(
        "--patients", type=int, default=None, help="number of patients (HCC_001 ...); not with --twin"
    )
    parser.add_argument(
        "--twin",
        metavar="COLLECTION",
        default=None,
        help="write the twin of an IDC collection from the IDC index (needs the idc extra): a collection "
        "id or an idc:// URL with filters, e.g. 'idc://hcc_tace_seg?patients=HCC_001,HCC_002'",
    )
    parser.add_argument(
        "--pixels", type=int, default=None, help="--twin: rows and columns of every slice (default 32)"
    )
    parser.add_argument(
        "--index",
        metavar="FILE",
        default=None,
        help="--twin: another copy of the IDC index (parquet, or CSV with IDC's columns)",
    )
    parser.add_argument(
        "--size",
        choices=("small", "full"),
        default="small",
        help="full: 512x512 slices; small: 64x64 (tests)",
    )
    parser.add_argument("--layout", choices=("tcia", "idc"), default="tcia", help="folder layout")
    parser.add_argument(
        "--edition",
        choices=("tcia", "idc"),
        default="tcia",
        help="tcia: one manual SEG per patient; idc: also 1 to 6 AIMI-like SEGs (liver and tumour, "
        "AUTOMATIC or radiologist-corrected), every SEG dcmqi-style, 1 to 3 CT series per study",
    )
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
    if args.twin is not None:
        return _run_twin(args, options)
    if args.patients is None:
        print("hcc-shards synth: give --patients N (or --twin COLLECTION)", file=sys.stderr)
        return 2
    faults = []
    if args.faults and args.edition != "tcia":
        # A fault's expected outcome is written for the one manual SEG of the TCIA edition.
        print("hcc-shards synth: --faults needs --edition tcia", file=sys.stderr)
        return 2
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
        edition=args.edition,
    )
    if faults:
        from hcc_shards.synth.faults import assign_faults, inject_faults

        for f in inject_faults(args.out, truth, assign_faults(truth, faults), options):
            print(f"FAULT {f.patient_id}  {f.fault:<28} -> {f.code} ({f.stage}) {f.path}")
    elapsed = time.perf_counter() - started
    for p in truth.patients:
        seg = "no SEG" if p.seg_sop_instance_uid is None else f"SEG on acquisition {p.ct_acquisition_number}"
        if p.segs:
            seg += f", {len(p.segs)} SEGs in all"
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
    if args.edition == "idc":
        by = ", ".join(f"{k} {v}" for k, v in truth.segs_by_source().items())
        print(f"{len(truth.segs)} SEGs ({by})")
    return 0


def _run_twin(args: argparse.Namespace, options: dict | None) -> int:
    from hcc_shards.errors import ConfigError
    from hcc_shards.synth.twin import DEFAULT_PIXELS, generate_twin

    if args.patients is not None or args.faults:
        print(
            "hcc-shards synth: --twin takes its patients from the index; drop --patients/--faults",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    try:
        truth = generate_twin(
            args.out,
            args.twin,
            pixels=args.pixels or DEFAULT_PIXELS,
            seed=args.seed,
            workers=args.workers,
            storage_options=options,
            truth_url=args.truth,
            index_path=args.index,
        )
    except ConfigError as exc:
        print(f"hcc-shards synth: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    t = truth.totals()
    by = ", ".join(f"{k} {v}" for k, v in t["segs_by_source"].items())
    print(
        f"wrote the twin of {truth.source}: {t['patients']} patients, {t['studies']} studies, "
        f"{t['series']} series, {t['instances']:,} instances, {t['segs']} SEGs ({by}), "
        f"{t['bytes'] / 1e6:.1f} MB to {args.out} in {elapsed:.1f} s ({args.workers} worker(s))"
        + (f"; truth: {args.truth}" if args.truth else "")
    )
    return 0

"""An image with k annotations: one image decode and resample plus k label decodes.

Generates one synthetic patient, adds k - 1 copies of its SEG as further annotations of the same
CT (new SOPInstanceUID and SeriesInstanceUID), then times in the same process:

- grouped: ``pipelines.cases.build_image`` on the k pairings (what the build runs), and
- separate: k ``build_case`` calls, each the only annotation of its image (what k separate
  single-annotation builds pay), each into its own output so nothing is resumed.

It counts CT decodes and image resamples by wrapping the two functions, and prints the times and
the ratio grouped / separate.

    python benchmarks/annotation_bench.py --k 4 --size small
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from hcc_shards import resample as resample_mod
from hcc_shards.build import cases, pair
from hcc_shards.build import target as build_target
from hcc_shards.build.plan import BuildPlan
from hcc_shards.config import BuildConfig
from hcc_shards.dicom import decode as decode_mod
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import pair_patient
from hcc_shards.synth import generate_cohort

COUNTS = {"ct_decodes": 0, "image_resamples": 0}


def _counting(module, name: str, key: str) -> None:
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        COUNTS[key] += 1
        return original(*args, **kwargs)

    setattr(module, name, wrapped)


def _cohort(root: Path, k: int, size: str) -> list[InstanceHeader]:
    generate_cohort(str(root), patients=1, size=size, seed=7)
    segs = [
        p
        for p in sorted(root.rglob("*.dcm"))
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SEG"
    ]
    seg = pydicom.dcmread(segs[0])
    for i in range(1, k):
        seg.SOPInstanceUID = seg.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        seg.SeriesInstanceUID = generate_uid()
        seg.save_as(root / f"extra-seg-{i}.dcm")
    config = BuildConfig()
    headers = [index_file(str(p), None, config) for p in sorted(root.rglob("*.dcm"))]
    return [h for h in headers if isinstance(h, InstanceHeader)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=4, help="annotations on the one image")
    parser.add_argument("--size", default="small", choices=["small", "full"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _counting(decode_mod, "decode_ct", "ct_decodes")
    _counting(resample_mod, "resample_image", "image_resamples")
    with tempfile.TemporaryDirectory() as tmp:
        headers = _cohort(Path(tmp) / "in", args.k, args.size)
        pairings, _ = pair_patient(headers, BuildConfig())
        assert len(pairings) == args.k and len({p.image_key for p in pairings}) == 1
        config = BuildConfig(target_spacing=(2.5, 0.8, 0.8))
        results = {}
        for mode in ("grouped", "separate"):
            times = []
            for rep in range(args.repeats):
                out = Path(tmp) / f"out-{mode}-{rep}"
                COUNTS.update(ct_decodes=0, image_resamples=0)
                start = time.perf_counter()
                if mode == "grouped":
                    plan = BuildPlan(input_url=tmp, output_url=str(out), config=config)
                    target = build_target.resolve_target([pair.pairing_spacing(pairings[0])], plan)
                    outcomes = cases.build_image(pairings, target, plan)
                else:
                    outcomes = []
                    for i, p in enumerate(pairings):
                        plan = BuildPlan(input_url=tmp, output_url=f"{out}-{i}", config=config)
                        target = build_target.resolve_target([pair.pairing_spacing(p)], plan)
                        outcomes.append(cases.build_case(p, target, plan))
                times.append(time.perf_counter() - start)
                assert all(o.kind == "case" for o in outcomes), [o.record for o in outcomes]
            results[mode] = (min(times), dict(COUNTS))
        g, s = results["grouped"], results["separate"]
        print(f"k = {args.k} annotations on one {args.size} CT image, best of {args.repeats}")
        print(f"grouped  (one image unit):     {g[0]:.3f} s  {g[1]}")
        print(f"separate ({args.k} single builds):  {s[0]:.3f} s  {s[1]}")
        print(f"ratio grouped / separate: {g[0] / s[0]:.2f}")


if __name__ == "__main__":
    main()

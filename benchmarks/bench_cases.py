"""Full-size benchmark cases: one annotated CT series plus its SEG, written with the synthetic generator.

A case is patient ``index`` of synthetic cohort ``seed`` (hcc_shards.synth), with its annotated CT
series replaced by an axial grid of ``slices`` x 512 x 512 voxels at (``dz``, ``dxy``, ``dxy``) mm
centred on the liver, and nothing else written: only the files a build reads in full (the CT slices
and the SEG), so every stage of the benchmark works on exactly one case. The files are the
generator's own (pydicom CT slices, highdicom SEG) and the same arguments give the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.synth.cohort import encode_dataset
from hcc_shards.synth.ct import render_series
from hcc_shards.synth.plan import Quirk, plan_patient
from hcc_shards.synth.seg import build_seg


def _plain_index(seed: int, start: int) -> int:
    """First patient index >= ``start`` without a quirk (one SEG on a single-acquisition series)."""
    index = start
    while plan_patient(seed, index, "small").quirk is not Quirk.NONE:
        index += 1
    return index


def write_case(out: Path, *, seed: int, index: int, slices: int, dz: float, dxy: float) -> dict:
    """Write the case under ``out`` (``ct/`` slices, ``seg.dcm``) and return its description."""
    marker = out / "case.json"
    if marker.exists():
        return json.loads(marker.read_text())
    index = _plain_index(seed, index)
    plan = plan_patient(seed, index, "full")
    if plan.seg is None:
        raise RuntimeError(f"patient {index} of cohort {seed} has no SEG")
    k, i = plan.seg.study_index, plan.seg.series_index
    study = plan.studies[k]
    series = study.series[i]
    lo, hi = plan.anatomy.s_extent
    centre_s = (lo + hi) / 2.0
    half = (512 - 1) * dxy / 2.0
    geometry = Geometry.from_components(
        shape=(slices, 512, 512),
        spacing_zyx=(dz, dxy, dxy),
        origin_lps=(-half, round(plan.anatomy.body.centre_lp[1] - half, 4), centre_s - (slices - 1) * dz / 2),
    )
    new_series = dataclasses.replace(series, geometry=geometry, acquisitions=series.acquisitions[:1])
    seg_plan = dataclasses.replace(plan.seg, acquisition_number=new_series.acquisitions[0][0], grid=None)
    studies = list(plan.studies)
    studies[k] = dataclasses.replace(study, series=(*study.series[:i], new_series, *study.series[i + 1 :]))
    plan = dataclasses.replace(plan, studies=tuple(studies), seg=seg_plan)
    rendered = render_series(plan, k, i)
    (out / "ct").mkdir(parents=True, exist_ok=True)
    nbytes = 0
    for ds in rendered.datasets:
        data = encode_dataset(ds)
        nbytes += len(data)
        (out / "ct" / f"{int(ds.InstanceNumber):04d}.dcm").write_bytes(data)
    # The SEG references the slices' headers, ascending along the stack, as the generator does.
    sources = sorted(rendered.datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))
    for ds in sources:
        del ds.PixelData
    seg = build_seg(plan, sources, rendered.raster.segments, None)
    seg_bytes = encode_dataset(seg)
    (out / "seg.dcm").write_bytes(seg_bytes)
    voxels = np.count_nonzero(rendered.raster.segments, axis=(0, 1, 2)).tolist()
    info = {
        "patient_id": plan.patient_id,
        "seed": seed,
        "index": index,
        "shape_zyx": list(geometry.shape),
        "spacing_zyx": [dz, dxy, dxy],
        "ct_files": len(rendered.datasets),
        "ct_bytes": nbytes,
        "seg_bytes": len(seg_bytes),
        "raw_ct_bytes": int(np.prod(geometry.shape)) * 2,
        "segment_voxels": voxels,
    }
    marker.write_text(json.dumps(info, indent=1))
    return info


def clone_case(src: Path, dst: Path, copy: int) -> None:
    """Copy case ``src`` to ``dst`` as another patient: every UID, PatientID and PatientName renamed.

    The pixels and the geometry stay the same, so N clones cost a build N times one case; UIDs are
    derived from (old UID, copy), so references between the CT slices and the SEG still hold.
    Only DICOM files go under ``dst``; the SEG is written last and marks a finished copy.
    """
    import hashlib

    import pydicom

    if (dst / "seg.dcm").exists():
        return
    patient = f"{json.loads((src / 'case.json').read_text())['patient_id']}_C{copy:03d}"

    def new_uid(uid: str) -> str:
        digest = hashlib.sha256(f"{uid}:{copy}".encode()).digest()
        return f"2.25.{int.from_bytes(digest[:15], 'big')}"

    def rename(ds, elem) -> None:
        if elem.VR == "UI" and elem.keyword not in ("SOPClassUID", "ReferencedSOPClassUID"):
            if elem.VM > 1:
                elem.value = [new_uid(v) for v in elem.value]
            elif elem.value:
                elem.value = new_uid(str(elem.value))

    (dst / "ct").mkdir(parents=True, exist_ok=True)
    for f in [*sorted((src / "ct").iterdir()), src / "seg.dcm"]:
        ds = pydicom.dcmread(f)
        ds.walk(rename)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patient
        ds.PatientName = patient
        ds.save_as(dst / ("seg.dcm" if f.name == "seg.dcm" else f"ct/{f.name}"), enforce_file_format=True)


def write_cohort(workdir: Path, n: int, *, slices: int, dz: float, dxy: float) -> Path:
    """The pipeline benchmarks' cohort: ``n`` clones of the ``slices``-slice case; returns its input folder.

    Kept under ``workdir`` (``case<slices>``, ``cohort<slices>x<n>/input/P000`` ...) and reused by
    later runs, since writing 48 clones takes a minute or two.
    """
    case_dir = workdir / f"case{slices}"
    write_case(case_dir, seed=0, index=9, slices=slices, dz=dz, dxy=dxy)
    cohort = workdir / f"cohort{slices}x{n}" / "input"
    for k in range(n):
        clone_case(case_dir, cohort / f"P{k:03d}", k)
    return cohort

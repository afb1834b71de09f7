"""nnU-Net's preprocessing path on one case, timed; runs in the benchmark-only environment.

Usage (benchmarks/build_bench.py calls it): ``python nnunet_path.py '<job JSON>'`` with keys
``ct_dir`` (the DICOM CT slices), ``label`` (the decoded label map as .npy, on the CT grid),
``spacing`` (target z, y, x mm) and ``out`` (a folder for the blosc2 files).

The steps are those of nnU-Net v2's DefaultPreprocessor for one case, minus its cropping and
intensity normalisation, with nnunetv2's own functions: SimpleITK reads the series (as
nnU-Net's SimpleITKIO does, to float32, spacing reversed to z, y, x); ``compute_new_shape``;
``resample_data_or_seg_to_shape`` for the image (order 3, order_z 0, separate z decided by its
anisotropy rule) and for the segmentation (is_seg, order 1: one-hot per label); then
``comp_blosc2_params`` and ``nnUNetDatasetBlosc2.save_case`` (float32 image, int16 labels).
Prints one JSON line: seconds per step, total, and the resident memory the case added.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from pathlib import Path


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def main(job: dict) -> dict:
    import numpy as np
    import SimpleITK as sitk
    import torch
    from nnunetv2.preprocessing.resampling.default_resampling import (
        compute_new_shape,
        resample_data_or_seg_to_shape,
    )
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    out = Path(job["out"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    label_path = job["label"]
    target = [float(v) for v in job["spacing"]]
    base = _status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(job["ct_dir"]))
    image = reader.Execute()
    spacing = list(image.GetSpacing())[::-1]
    data = sitk.GetArrayFromImage(image).astype(np.float32)[None]
    del image
    seg = np.load(label_path).astype(np.float32)[None]
    t1 = time.perf_counter()
    t["read"] = t1 - t0
    new_shape = compute_new_shape(data.shape[1:], spacing, target)
    data = resample_data_or_seg_to_shape(
        data, new_shape, spacing, target, is_seg=False, order=3, order_z=0, force_separate_z=None
    )
    t2 = time.perf_counter()
    t["resample_image"] = t2 - t1
    seg = resample_data_or_seg_to_shape(
        seg, new_shape, spacing, target, is_seg=True, order=1, order_z=0, force_separate_z=None
    )
    t3 = time.perf_counter()
    t["resample_seg"] = t3 - t2
    data = data.astype(np.float32, copy=False)
    seg = seg.astype(np.int16, copy=False)
    patch = (128, 128, 128)
    blocks, chunks = comp_blosc2_params(data.shape, patch, data.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch, seg.itemsize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nnUNetDatasetBlosc2.save_case(
            data,
            seg,
            {"spacing": target},
            str(out / "case"),
            chunks=chunks,
            blocks=blocks,
            chunks_seg=chunks_seg,
            blocks_seg=blocks_seg,
        )
    t4 = time.perf_counter()
    t["save"] = t4 - t3
    t["resample"] = t["resample_image"] + t["resample_seg"]
    t["total"] = t4 - t0
    t["rss_added"] = float(_status("VmHWM:") - base)
    t["shape_out"] = [int(v) for v in data.shape[1:]]
    shutil.rmtree(out, ignore_errors=True)
    return t


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))

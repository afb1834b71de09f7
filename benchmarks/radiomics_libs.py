"""Radiomics libraries on the same image and mask: pyradiomics-bhklab against mirp, seconds per label.

``python benchmarks/radiomics_libs.py [--size 96]`` in an environment holding both libraries. The
image is a CT-like int16 volume (soft tissue with 12 HU noise, an ellipsoid liver and a brighter
tumour inside it) on a 2.5 x 0.78 x 0.78 mm grid; features: shape, first order, GLCM, GLRLM, GLSZM,
GLDM, NGTDM on the original image, bin width 25 HU, no resampling.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def phantom(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: n // 3, :n, :n]
    cz, c = n // 6, n / 2
    liver = ((z - cz) / (n / 7)) ** 2 + ((y - c) / (n / 3)) ** 2 + ((x - c) / (n / 2.5)) ** 2 < 1
    tumor = ((z - cz) / (n / 14)) ** 2 + ((y - c) / (n / 9)) ** 2 + ((x - c * 1.1) / (n / 9)) ** 2 < 1
    image = rng.normal(-100, 12, liver.shape) + 160 * liver + 50 * tumor
    label = np.where(tumor, 2, np.where(liver, 1, 0)).astype(np.uint8)
    return image.astype(np.int16), label, (2.5, 0.78, 0.78)


def run_pyradiomics(image, label, spacing, value) -> tuple[float, int]:
    import SimpleITK as sitk
    from radiomics import featureextractor

    img = sitk.GetImageFromArray(image)
    img.SetSpacing(tuple(reversed(spacing)))
    msk = sitk.GetImageFromArray(label)
    msk.SetSpacing(tuple(reversed(spacing)))
    ext = featureextractor.RadiomicsFeatureExtractor(binWidth=25, label=value)
    ext.disableAllFeatures()
    for c in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"):
        ext.enableFeatureClassByName(c)
    t = time.perf_counter()
    out = ext.execute(img, msk)
    return time.perf_counter() - t, sum(1 for k in out if k.startswith("original_"))


def run_mirp(image, label, spacing, value) -> tuple[float, int]:
    from mirp import extract_features

    t = time.perf_counter()
    out = extract_features(
        image=image.astype(np.float32),
        mask=(label == value).astype(np.uint8),
        image_voxel_spacing=tuple(spacing),
        image_modality="CT",
        base_discretisation_method="fixed_bin_size",
        base_discretisation_bin_width=25.0,
        base_feature_families=[
            "morphology",
            "statistics",
            "glcm",
            "glrlm",
            "glszm",
            "gldzm",
            "ngtdm",
            "ngldm",
        ],
        no_approximation=False,
    )
    return time.perf_counter() - t, int(out[0].shape[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=192, help="in-plane size (z is a third of it)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    image, label, spacing = phantom(args.size)
    print(f"volume {image.shape}, liver {int((label == 1).sum())} voxels, tumour {int((label == 2).sum())}")
    for name, fn in (("pyradiomics-bhklab", run_pyradiomics), ("mirp", run_mirp)):
        for value, lab in ((1, "liver"), (2, "tumour")):
            times = []
            for _ in range(args.repeat):
                sec, n = fn(image, label, spacing, value)
                times.append(sec)
            print(f"{name:20s} {lab:7s} best {min(times):7.2f} s  features {n}")


if __name__ == "__main__":
    main()

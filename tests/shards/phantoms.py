"""Synthetic CT cases: ellipsoids placed in LPS world coordinates, rasterised on any Geometry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from hcc_shards.case import Case, Provenance
from hcc_shards.geometry import Geometry
from hcc_shards.labels import AORTA, LIVER, PORTAL_VEIN, TUMOR


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned (in LPS) ellipsoid with one label and one mean HU."""

    centre_lps: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    """Semi-axes along L, P, S."""
    value: int
    hu: float

    @property
    def volume_ml(self) -> float:
        return 4.0 / 3.0 * np.pi * float(np.prod(self.radii_mm)) / 1000.0


def default_structures(
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0), scale: float = 1.0
) -> list[Ellipsoid]:
    """Liver (about 1300 ml), a tumour inside it, a portal vein and an aorta; later ones overwrite earlier."""
    cx, cy, cz = centre
    s = scale
    return [
        Ellipsoid((cx - 30 * s, cy, cz), (85 * s, 65 * s, 55 * s), LIVER, 60.0),
        Ellipsoid((cx - 40 * s, cy + 10 * s, cz + 5 * s), (25 * s, 22 * s, 20 * s), TUMOR, 100.0),
        Ellipsoid((cx + 10 * s, cy - 5 * s, cz), (9 * s, 9 * s, 35 * s), PORTAL_VEIN, 160.0),
        Ellipsoid((cx + 75 * s, cy - 30 * s, cz), (10 * s, 10 * s, 60 * s), AORTA, 200.0),
    ]


def rasterise(geometry: Geometry, structures: list[Ellipsoid], *, noise_hu: float = 12.0, seed: int = 0):
    """(image int16, label uint8) on ``geometry``: voxel centres inside each ellipsoid take its label."""
    nz, ny, nx = geometry.shape
    label = np.zeros(geometry.shape, dtype=np.uint8)
    image = np.full(geometry.shape, -100.0, dtype=np.float32)
    a = geometry.affine
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    for k in range(nz):
        world = [a[r, 0] * k + a[r, 1] * jj + a[r, 2] * ii + a[r, 3] for r in range(3)]
        # Body outline: a wide ellipse of soft tissue so the image is not mostly air.
        body = (world[0] / 170.0) ** 2 + (world[1] / 130.0) ** 2 <= 1.0
        sl_img = image[k]
        sl_img[~body] = -1000.0
        for e in structures:
            d = sum(((world[r] - e.centre_lps[r]) / e.radii_mm[r]) ** 2 for r in range(3))
            inside = d <= 1.0
            label[k][inside] = e.value
            sl_img[inside] = e.hu
    rng = np.random.default_rng(seed)
    image += rng.normal(0.0, noise_hu, size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), label


def make_case(
    shape=(40, 160, 160),
    spacing=(5.0, 1.4, 1.4),
    *,
    patient_id: str = "HCC_001",
    seg_uid: str = "1.2.3.4.1",
    direction=None,
    structures: list[Ellipsoid] | None = None,
    noise_hu: float = 12.0,
    seed: int = 0,
) -> Case:
    """A phantom case centred on the world origin."""
    direction = np.array(
        direction if direction is not None else [[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float64
    )
    half = (np.asarray(shape) - 1) / 2.0 * np.asarray(spacing)
    origin = -(direction @ half)
    geometry = Geometry.from_components(
        shape=shape, spacing_zyx=spacing, origin_lps=origin, direction=direction
    )
    image, label = rasterise(geometry, structures or default_structures(), noise_hu=noise_hu, seed=seed)
    provenance = Provenance(
        patient_id=patient_id,
        study_instance_uid=f"1.2.826.0.1.{int(hashlib.sha1(patient_id.encode()).hexdigest()[:8], 16)}",
        ct_series_instance_uid=f"{seg_uid}.10",
        ct_acquisition_number=2,
        seg_sop_instance_uid=seg_uid,
        seg_series_instance_uid=f"{seg_uid}.20",
        pairing_method="referenced_series",
    )
    return Case(image=image, label=label, geometry=geometry, provenance=provenance)

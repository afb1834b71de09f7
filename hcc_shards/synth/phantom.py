"""A phantom abdomen in LPS millimetres, drawn at random, and rasterised to tissues and labels.

The anatomy is a set of smooth analytic solids (hcc_shards.synth.shapes), so it can be sampled
on any grid. Orientation: L grows towards the patient's left, P towards the back, S towards the
head. The liver sits on the patient's right (negative L), the spine and aorta at the back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.synth.shapes import Blob, Column, Tube, block, full_slab, iter_slabs


class Tissue(IntEnum):
    """Tissue classes of the rasterised phantom; each has an HU per contrast phase."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    SOFT = 3
    BONE = 4
    MARROW = 5
    KIDNEY = 6
    LIVER = 7
    TUMOUR = 8
    PORTAL = 9
    AORTA = 10


PHASES: tuple[str, ...] = ("pre", "arterial", "portal_venous", "delayed")
"""Contrast phases, in acquisition order."""

# Mean HU per tissue and phase. Arterial: aorta bright, tumour brighter than liver (hyper-
# enhancing HCC); portal venous: portal vein and liver enhance, tumour washes out below liver.
_HU: dict[str, tuple[float, ...]] = {
    #                AIR     FAT   MUSCLE SOFT  BONE  MARROW KIDNEY LIVER TUMOUR PORTAL AORTA
    "pre": (-1000.0, -100.0, 50.0, 35.0, 750.0, 230.0, 32.0, 58.0, 42.0, 40.0, 42.0),
    "arterial": (-1000.0, -100.0, 55.0, 55.0, 750.0, 240.0, 190.0, 72.0, 125.0, 95.0, 310.0),
    "portal_venous": (-1000.0, -100.0, 60.0, 70.0, 750.0, 240.0, 170.0, 112.0, 82.0, 175.0, 160.0),
    "delayed": (-1000.0, -100.0, 58.0, 60.0, 750.0, 235.0, 125.0, 92.0, 68.0, 120.0, 115.0),
}

SEGMENT_NAMES: tuple[str, ...] = ("Liver", "Mass", "Portal vein", "Abdominal aorta")
"""SEG segment labels, in the collection's order."""

VOLUME_RANGES_ML: dict[str, tuple[float, float]] = {
    "liver": (700.0, 2750.0),
    "tumour": (4.5, 1000.0),
    "portal_vein": (3.5, 180.0),
    "aorta": (3.0, 125.0),
}
"""Target volume ranges of the random draw (the dataset card's ranges, kept slightly inside)."""


@dataclass(frozen=True)
class Anatomy:
    """One patient's phantom abdomen; every length in mm, every position LPS."""

    body: Column
    """Skin outline."""
    fat_mm: float
    """Subcutaneous fat thickness."""
    muscle_mm: float
    """Abdominal wall muscle thickness."""
    spine: Column
    """Vertebral bodies (a column; discs are cut out periodically)."""
    ribs_below_s: float
    """Ribs exist above this S level."""
    liver: tuple[Blob, ...]
    """Right lobe and left lobe; their union, inside the abdominal wall, is the liver organ."""
    tumours: tuple[Blob, ...]
    """Masses; only their part inside the liver organ counts."""
    portal: tuple[Tube, ...]
    """Portal vein trunk and branches."""
    aorta: Column
    """Whole abdominal aorta, visible on every slice."""
    aorta_label_s: tuple[float, float]
    """S range of the aorta stretch that the segmentation covers."""
    kidneys: tuple[Blob, ...]
    """Right and left kidney."""
    targets_ml: tuple[tuple[str, float], ...]
    """The drawn target volumes (liver, tumour, portal_vein, aorta), for reporting."""

    @property
    def liver_centre(self) -> tuple[float, float, float]:
        return self.liver[0].centre

    @property
    def s_extent(self) -> tuple[float, float]:
        """S range worth imaging: the liver plus the kidneys."""
        lo = min(b.bbox()[0][2] for b in (*self.liver, *self.kidneys))
        hi = max(b.bbox()[1][2] for b in self.liver)
        return float(lo), float(hi)


def _weyl(index: int, salt: float, irrational: float) -> float:
    # A low-discrepancy draw: patients 1..N spread evenly over [0, 1) whatever N is, while each
    # value stays a pure function of (seed, index).
    return (salt + index * irrational) % 1.0


def _log_lerp(lo: float, hi: float, u: float) -> float:
    return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def _wobble(rng: np.random.Generator, n: int, total_amp: float) -> tuple[tuple[float, ...], ...]:
    amps = rng.dirichlet(np.ones(n)) * total_amp
    return tuple(
        (float(a), *(float(f) for f in rng.uniform(-3.0, 3.0, 3)), float(rng.uniform(0, 2 * math.pi)))
        for a in amps
    )


def _radius_for_ml(volume_ml: float) -> float:
    return (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


def draw_anatomy(rng: np.random.Generator, index: int, *, huge_tumour: bool = False) -> Anatomy:
    """Draw one patient's anatomy. ``index`` spreads organ volumes evenly across the cohort.

    ``huge_tumour`` makes the mass fill most of the liver (tumour volume > 1.5x liver).
    """
    salt = rng.uniform(0, 1, 4)
    liver_ml = _log_lerp(*VOLUME_RANGES_ML["liver"], _weyl(index, salt[0], math.sqrt(2) - 1))
    tumour_ml = _log_lerp(*VOLUME_RANGES_ML["tumour"], _weyl(index, salt[1], math.sqrt(3) - 1))
    portal_ml = _log_lerp(*VOLUME_RANGES_ML["portal_vein"], _weyl(index, salt[2], math.sqrt(5) - 2))
    aorta_ml = _log_lerp(*VOLUME_RANGES_ML["aorta"], _weyl(index, salt[3], math.sqrt(7) - 2))
    if huge_tumour:
        liver_ml = min(liver_ml, 1300.0)
        tumour_ml = liver_ml * float(rng.uniform(1.8, 2.6))
    else:
        # Keeps every other patient clear of the tumour > 1.5x liver QC flag.
        tumour_ml = min(tumour_ml, 0.45 * liver_ml)
    organ_ml = liver_ml + tumour_ml

    half_width = float(np.clip(150.0 + 28.0 * (organ_ml / 1500.0 - 1.0) + rng.normal(0, 8), 140.0, 228.0))
    body = Column((0.0, float(rng.normal(0, 4))), (half_width, half_width * float(rng.uniform(0.68, 0.8))))
    fat_mm = float(rng.uniform(8, 28))
    muscle_mm = float(rng.uniform(7, 13))
    wall = fat_mm + muscle_mm
    inner_l = half_width - wall
    inner_p = body.axes_lp[1] - wall

    s_liver = float(rng.uniform(-190.0, -90.0))
    # Right lobe ~ 88% of the organ; the left lobe overlaps it and adds the rest.
    main_ml = organ_ml / 1.12
    ratios = np.array([1.0, float(rng.uniform(0.78, 0.9)), float(rng.uniform(0.85, 1.0))])
    a = (main_ml * 1000.0 / (4.0 / 3.0 * math.pi * float(np.prod(ratios)))) ** (1.0 / 3.0)
    axes = a * ratios
    centre = (-(inner_l - axes[0] * 0.92), body.centre_lp[1] - 0.12 * inner_p, s_liver)
    right = Blob(centre, tuple(float(v) for v in axes), _wobble(rng, 4, 0.14))  # type: ignore[arg-type]
    left = Blob(
        (centre[0] + 0.95 * axes[0], centre[1] - 0.3 * axes[1], s_liver + 0.2 * axes[2]),
        (0.7 * axes[0], 0.42 * axes[1], 0.5 * axes[2]),
        _wobble(rng, 3, 0.1),  # type: ignore[arg-type]
    )

    if huge_tumour:
        tumours: tuple[Blob, ...] = (right.scaled(0.93),)
    else:
        n = int(rng.integers(1, 4))
        shares = rng.dirichlet(np.full(n, 1.5))
        tumours = tuple(_place_tumour(rng, right, tumour_ml * float(s)) for s in shares)

    spine_r = float(rng.uniform(16, 22))
    spine = Column((0.0, inner_p - spine_r * 2.2), (spine_r, spine_r * 0.85))
    # The annotated aorta stretch stays within the liver's craniocaudal extent (which every
    # diagnostic series covers); large volumes come from a wider aorta, not a longer stretch.
    aorta_r = float(rng.uniform(9.0, 13.5))
    max_len = 1.8 * axes[2]
    label_len = float(np.clip(aorta_ml * 1000.0 / (math.pi * aorta_r**2), 8.0, max_len))
    aorta_r = float(np.clip(math.sqrt(aorta_ml * 1000.0 / (math.pi * label_len)), aorta_r, 17.0))
    aorta = Column(
        (float(rng.uniform(12, 24)), spine.centre_lp[1] - spine_r * 0.85 - aorta_r - 3.0), (aorta_r, aorta_r)
    )
    label_s0 = s_liver - label_len / 2.0
    portal = _portal_tree(right, portal_ml)
    kid_axes = (float(rng.uniform(26, 32)), float(rng.uniform(22, 27)), float(rng.uniform(48, 58)))
    kid_p = spine.centre_lp[1] - 5.0
    kid_s = s_liver - axes[2] * 0.75
    kidneys = (
        Blob((-(spine_r + 48.0), kid_p, kid_s - 15.0), kid_axes, _wobble(rng, 2, 0.05)),  # type: ignore[arg-type]
        Blob((spine_r + 48.0, kid_p, kid_s + 5.0), kid_axes, _wobble(rng, 2, 0.05)),  # type: ignore[arg-type]
    )
    return Anatomy(
        body=body,
        fat_mm=fat_mm,
        muscle_mm=muscle_mm,
        spine=spine,
        ribs_below_s=s_liver - 0.35 * axes[2],
        liver=(right, left),
        tumours=tumours,
        portal=portal,
        aorta=aorta,
        aorta_label_s=(label_s0, label_s0 + label_len),
        kidneys=kidneys,
        targets_ml=(
            ("liver", round(liver_ml, 3)),
            ("tumour", round(tumour_ml, 3)),
            ("portal_vein", round(portal_ml, 3)),
            ("aorta", round(aorta_ml, 3)),
        ),
    )


def _place_tumour(rng: np.random.Generator, host: Blob, volume_ml: float) -> Blob:
    r = _radius_for_ml(volume_ml)
    room = max(0.0, 1.0 - r / min(host.axes) - 0.12)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    offset = direction * room * float(rng.uniform(0.3, 1.0)) * np.asarray(host.axes)
    centre = tuple(float(v) for v in np.asarray(host.centre) + offset)
    stretch = rng.uniform(0.85, 1.15, 3)
    stretch /= np.prod(stretch) ** (1 / 3)
    return Blob(centre, tuple(float(r * s) for s in stretch), _wobble(rng, 2, 0.12))  # type: ignore[arg-type]


def _portal_tree(host: Blob, volume_ml: float) -> tuple[Tube, ...]:
    (cl, cp, cs), (al, ap, as_) = host.centre, host.axes
    hilum = np.array([cl + 0.35 * al, cp + 0.05 * ap, cs - 0.25 * as_])
    root = np.array([cl + 0.75 * al, cp + 0.2 * ap, cs - 1.05 * as_])
    right_end = hilum + np.array([-0.55 * al, 0.05 * ap, 0.12 * as_])
    left_end = hilum + np.array([0.6 * al, -0.3 * ap, 0.15 * as_])
    subs = [
        (right_end, right_end + np.array([-0.15 * al, -0.2 * ap, 0.35 * as_])),
        (right_end, right_end + np.array([-0.1 * al, 0.25 * ap, -0.3 * as_])),
        (left_end, left_end + np.array([0.25 * al, -0.15 * ap, 0.25 * as_])),
        (left_end, left_end + np.array([0.2 * al, 0.15 * ap, -0.2 * as_])),
    ]
    trunk_len = float(np.linalg.norm(hilum - root))
    branch_len = float(np.linalg.norm(right_end - hilum) + np.linalg.norm(left_end - hilum))
    sub_len = sum(float(np.linalg.norm(b - a)) for a, b in subs)
    weighted = trunk_len + 0.5625 * branch_len + 0.25 * sub_len
    r = math.sqrt(volume_ml * 1000.0 / (math.pi * weighted))

    def tube(a: np.ndarray, b: np.ndarray, radius: float) -> Tube:
        return Tube(tuple(float(v) for v in a), tuple(float(v) for v in b), radius)  # type: ignore[arg-type]

    return (
        tube(root, hilum, r),
        tube(hilum, right_end, 0.75 * r),
        tube(hilum, left_end, 0.75 * r),
        *(tube(a, b, 0.5 * r) for a, b in subs),
    )


@dataclass(frozen=True, eq=False)
class Raster:
    """The phantom sampled on one grid."""

    tissue: np.ndarray
    """uint8 (z, y, x) :class:`Tissue` codes."""
    segments: np.ndarray
    """bool (z, y, x, 4): Liver (excluding Mass), Mass, Portal vein, Abdominal aorta."""


def rasterize(anatomy: Anatomy, geometry: Geometry, *, min_feature_mm: float = 0.0) -> Raster:
    """Sample tissues and the four segment masks at the voxel centres of ``geometry``.

    ``min_feature_mm`` widens thin vessels on coarse grids so every segment keeps voxels.
    """
    shape = geometry.shape
    tissue = np.zeros(shape, dtype=np.uint8)
    segments = np.zeros((*shape, 4), dtype=bool)
    for z0, z1 in iter_slabs(geometry):
        _rasterize_slab(anatomy, geometry, (z0, z1), tissue, segments, min_feature_mm)
    return Raster(tissue=tissue, segments=segments)


def _rasterize_slab(
    an: Anatomy,
    geometry: Geometry,
    zr: tuple[int, int],
    tissue: np.ndarray,
    segments: np.ndarray,
    min_feature_mm: float,
) -> None:
    slab = full_slab(geometry, zr)
    p = slab.points
    t = tissue[slab.index]
    level = an.body.level(p)
    wall = an.fat_mm + an.muscle_mm
    fat_edge = (1.0 - an.fat_mm / an.body.axes_lp[1]) ** 2
    inner_edge = (1.0 - wall / an.body.axes_lp[1]) ** 2
    t[level < 1.0] = Tissue.FAT
    t[level < fat_edge] = Tissue.MUSCLE
    interior = level < inner_edge
    t[interior] = Tissue.SOFT
    # Visceral fat pockets: a smooth periodic pattern, cheap and free of voxel noise.
    pockets = np.sin(p[..., 0] / 11.0) * np.sin(p[..., 1] / 13.0 + 1.0) * np.sin(p[..., 2] / 17.0) > 0.45
    t[interior & pockets] = Tissue.FAT
    # Ribs: a slanted band pattern just inside the abdominal wall, above ribs_below_s.
    rib_box = block(geometry, zr, np.array([-1e5, -1e5, an.ribs_below_s]), np.full(3, 1e5))
    if rib_box is not None:
        q = rib_box.points
        lv = level[rib_box.local(zr[0])]
        ang = np.degrees(np.arctan2(q[..., 1] - an.body.centre_lp[1], q[..., 0]))
        bands = ((q[..., 2] + 0.35 * np.abs(ang)) % 28.0) < 8.0
        ribs = (lv < inner_edge) & (lv > inner_edge * 0.86) & bands & ~((ang > -125) & (ang < -55))
        t[rib_box.local(zr[0])][ribs] = Tissue.BONE

    organ = np.zeros(t.shape, dtype=bool)
    for lobe in an.liver:
        _paint(geometry, zr, lobe.bbox(), lobe.inside, organ, slab.index[0].start)
    aorta = np.zeros(t.shape, dtype=bool)
    _paint(geometry, zr, an.aorta.bbox(), an.aorta.inside, aorta, zr[0])
    spine = np.zeros(t.shape, dtype=bool)
    _paint(geometry, zr, an.spine.bbox(), an.spine.inside, spine, zr[0])
    organ &= interior & ~(aorta | spine)
    mass = np.zeros(t.shape, dtype=bool)
    for tum in an.tumours:
        # A coarse grid could fall between the slices of a small tumour; grow it to stay visible.
        small = 0.6 * min_feature_mm / min(tum.axes)
        tum = tum.scaled(small) if small > 1.0 else tum
        _paint(geometry, zr, tum.bbox(), tum.inside, mass, slab.index[0].start)
    mass &= organ
    portal = np.zeros(t.shape, dtype=bool)
    rmin = min_feature_mm / 2.0
    for tube in an.portal:
        _paint(geometry, zr, tube.bbox(rmin), lambda q, tb=tube: tb.inside(q, rmin), portal, zr[0])
    portal &= interior
    s0, s1 = an.aorta_label_s
    half = min_feature_mm / 2.0
    aorta_label = aorta & (p[..., 2] >= s0 - half) & (p[..., 2] <= s1 + half)

    kidney = np.zeros(t.shape, dtype=bool)
    for kid in an.kidneys:
        _paint(geometry, zr, kid.bbox(), kid.inside, kidney, zr[0])
    t[kidney & interior] = Tissue.KIDNEY
    t[organ] = Tissue.LIVER
    t[portal] = Tissue.PORTAL
    t[mass] = Tissue.TUMOUR
    t[aorta] = Tissue.AORTA
    (cl, cp), (al, ap) = an.spine.centre_lp, an.spine.axes_lp
    back = block(
        geometry,
        zr,
        np.array([cl - al - 45.0, cp - ap, -1e5]),
        np.array([cl + al + 45.0, cp + ap + 40.0, 1e5]),
    )
    if back is not None:
        _paint_spine(an, back.points, t[back.local(zr[0])])

    seg = segments[slab.index]
    seg[..., 0] = organ & ~mass
    seg[..., 1] = mass
    seg[..., 2] = portal
    seg[..., 3] = aorta_label


def _paint(geometry: Geometry, zr: tuple[int, int], bbox, inside, out: np.ndarray, slab_start: int) -> None:
    blk = block(geometry, zr, *bbox)
    if blk is not None:
        out[blk.local(slab_start)] |= inside(blk.points)


def _paint_spine(an: Anatomy, p: np.ndarray, t: np.ndarray) -> None:
    (cl, cp), (al, ap) = an.spine.centre_lp, an.spine.axes_lp
    level = an.spine.level(p)
    disc = (p[..., 2] % 32.0) < 6.0
    t[(level < 1.0) & ~disc] = Tissue.BONE
    t[(level < 0.72) & ~disc] = Tissue.MARROW
    t[(level < 1.0) & disc] = Tissue.SOFT
    # Spinal canal behind the body, ringed by the posterior arch; paraspinal muscles either side.
    canal = Column((cl, cp + ap + 9.0), (8.0, 7.0))
    arch = Column((cl, cp + ap + 11.0), (16.0, 14.0))
    t[(arch.level(p) < 1.0)] = Tissue.BONE
    t[(canal.level(p) < 1.0)] = Tissue.SOFT
    for side in (-1.0, 1.0):
        muscle = Column((cl + side * (al + 22.0), cp + ap + 12.0), (18.0, 22.0))
        t[(muscle.level(p) < 1.0) & (t != Tissue.AIR)] = Tissue.MUSCLE


def render_hu(raster: Raster, phase: str, rng: np.random.Generator, *, noise_hu: float = 12.0) -> np.ndarray:
    """float32 HU volume: the phase's mean HU per tissue, slow texture and Gaussian noise."""
    if phase not in _HU:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    lut = np.asarray(_HU[phase], dtype=np.float32)
    hu = lut[raster.tissue]
    noise = rng.standard_normal(size=hu.shape, dtype=np.float32)
    noise *= np.float32(noise_hu)
    noise[raster.tissue == Tissue.AIR] *= np.float32(0.3)
    hu += noise
    return hu


def label_map(segments: np.ndarray) -> np.ndarray:
    """uint8 labels 1 liver, 2 tumour, 3 portal vein, 4 aorta; Mass > Portal vein > Aorta > Liver."""
    out = np.zeros(segments.shape[:3], dtype=np.uint8)
    for value, channel in ((1, 0), (4, 3), (3, 2), (2, 1)):
        out[segments[..., channel]] = value
    return out

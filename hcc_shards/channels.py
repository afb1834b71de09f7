"""Phase channels of one annotated image: the study's other acquisitions on the image's stored grid.

Order of operations of :func:`phase_channels` (docs/PHASES.md): (1) per source acquisition
(hcc_shards.dicom.phase_sources), decode its CT once; (2) resample it onto the annotated image's
stored grid by trilinear interpolation in world (LPS) coordinates, with no registration (one
FrameOfReferenceUID); target voxels outside the source's field are the image fill (-1024 HU) and
count against the channel's ``coverage``; (3) the rigid consistency check: normalised
cross-correlation with the annotated image over the voxels both cover, inside the body; (4) the
mean HU inside the annotation's aorta and portal vein labels, on the annotated image and on each
channel; (5) the phase of every channel, the annotated image included, decided together
(hcc_shards.phases). A source that fails to decode is left out with a warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.ct import decode_ct
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.pairing import Pairing
from hcc_shards.dicom.phase_sources import PhaseSource
from hcc_shards.errors import QuarantineError
from hcc_shards.format import IMAGE_FILL, PHASES_GROUP
from hcc_shards.geometry import Geometry
from hcc_shards.labels import AORTA, PORTAL_VEIN
from hcc_shards.phases import PhaseEvidence, assign_phases

FULL_COVERAGE = 0.999
"""A channel covering less than this share of the stored grid is flagged ``partial_coverage``."""
MOTION_STEP_MM = 4.0
"""Translation step of the rigid consistency check (rounded to whole voxels of the stored grid)."""
MOTION_GAIN = 0.02
"""Correlation a trial translation must gain over the stored alignment to flag ``moved``."""
BODY_HU = -500
"""Voxels above this HU in either image are inside the body (the consistency check's mask)."""
NCC_CLIP = (-200, 400)
"""HU range the correlation is computed on (air, bone and contrast extremes clipped)."""
MIN_VESSEL_VOXELS = 5
"""Fewer covered voxels of a vessel label than this: its HU is not measured."""
_SLAB_VOXELS = 1 << 20


@dataclass(frozen=True, eq=False)
class PhaseChannel:
    """One stored channel: its voxels on the stored grid and its ``hcc_shards.phases`` entry."""

    image: np.ndarray
    """int16 HU on the annotated image's stored grid."""
    attrs: dict[str, Any]
    """The channel's entry of the image attribute ``phases`` (docs/FORMAT.md)."""


def resample_onto(
    image: np.ndarray, source: Geometry, target: Geometry, fill: int = IMAGE_FILL
) -> tuple[np.ndarray, np.ndarray]:
    """(int16 ``image`` sampled at ``target``'s voxel centres, bool mask of the covered voxels).

    Trilinear in the source's continuous index; a target centre within half a voxel outside the
    source's outermost centres takes the edge value, one farther out is ``fill``. Slab by slab of
    target slices, so memory stays a few float32 slabs beyond the two volumes.
    """
    if image.shape != source.shape:
        raise ValueError(f"image shape {image.shape} != source geometry shape {source.shape}")
    to_source = np.linalg.inv(source.affine) @ target.affine
    nz, ny, nx = target.shape
    out = np.full(target.shape, fill, dtype=np.int16)
    covered = np.zeros(target.shape, dtype=bool)
    per = max(1, _SLAB_VOXELS // max(1, ny * nx))
    jj, ii = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    plane = np.stack([jj.ravel(), ii.ravel()])
    src = image.astype(np.float32, copy=False)
    hi = np.asarray(source.shape, dtype=np.float64) - 1
    for z0 in range(0, nz, per):
        z1 = min(nz, z0 + per)
        zz = np.repeat(np.arange(z0, z1, dtype=np.float64), plane.shape[1])
        idx = np.stack([zz, np.tile(plane[0], z1 - z0), np.tile(plane[1], z1 - z0), np.ones_like(zz)])
        pos = (to_source @ idx)[:3]
        inside = np.all((pos >= -0.5) & (pos <= hi[:, None] + 0.5), axis=0)
        if not inside.any():
            continue
        p = np.clip(pos[:, inside], 0, hi[:, None])
        lo = np.minimum(np.floor(p).astype(np.int64), np.maximum(hi[:, None].astype(np.int64) - 1, 0))
        w = (p - lo).astype(np.float32)
        acc = np.zeros(p.shape[1], dtype=np.float32)
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    kz = np.minimum(lo[0] + dz, int(hi[0]))
                    ky = np.minimum(lo[1] + dy, int(hi[1]))
                    kx = np.minimum(lo[2] + dx, int(hi[2]))
                    weight = (
                        (w[0] if dz else 1 - w[0]) * (w[1] if dy else 1 - w[1]) * (w[2] if dx else 1 - w[2])
                    )
                    acc += weight * src[kz, ky, kx]
        flat = out[z0:z1].reshape(-1)
        flat[inside] = np.clip(np.rint(acc), -32768, 32767).astype(np.int16)
        covered[z0:z1].reshape(-1)[inside] = True
    return out, covered


def consistency(reference: np.ndarray, channel: np.ndarray, covered: np.ndarray) -> float | None:
    """Normalised cross-correlation of the two images over covered voxels inside the body (clipped to
    :data:`NCC_CLIP`); None when fewer than 100 such voxels exist or either is constant there."""
    mask = covered & ((reference > BODY_HU) | (channel > BODY_HU))
    if int(np.count_nonzero(mask)) < 100:
        return None
    a = np.clip(reference[mask], *NCC_CLIP).astype(np.float64)
    b = np.clip(channel[mask], *NCC_CLIP).astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return None if denom == 0 else float((a * b).sum() / denom)


def _shifted(arr: np.ndarray, axis: int, d: int) -> tuple[slice, ...]:
    """Slices of ``arr`` that, against the opposite slices of the reference, shift it by ``d`` voxels."""
    n = arr.shape[axis]
    cut = [slice(None)] * 3
    cut[axis] = slice(max(0, d), n + min(0, d))
    return tuple(cut)


def rigid_check(
    reference: np.ndarray, channel: np.ndarray, covered: np.ndarray, spacing_zyx: Sequence[float]
) -> tuple[float | None, tuple[float, float, float]]:
    """(Correlation as stored, the translation in mm along (z, y, x) that correlates best).

    Translations of one and two steps of :data:`MOTION_STEP_MM` (at least a voxel) along each axis
    are tried; (0, 0, 0) unless one of them beats the stored alignment by :data:`MOTION_GAIN`. A
    patient who moved between acquisitions correlates better once shifted back."""
    ncc0 = consistency(reference, channel, covered)
    if ncc0 is None:
        return None, (0.0, 0.0, 0.0)
    best, best_shift = ncc0 + MOTION_GAIN, (0.0, 0.0, 0.0)
    for axis in range(3):
        step = max(1, round(MOTION_STEP_MM / float(spacing_zyx[axis])))
        for d in (-2 * step, -step, step, 2 * step):
            if abs(d) * 4 >= reference.shape[axis]:
                continue
            a = _shifted(reference, axis, d)
            b = _shifted(reference, axis, -d)
            ncc = consistency(reference[a], channel[b], covered[a] & covered[b])
            if ncc is not None and ncc > best:
                shift = [0.0, 0.0, 0.0]
                shift[axis] = round(d * float(spacing_zyx[axis]), 3)
                best, best_shift = ncc, (shift[0], shift[1], shift[2])
    return ncc0, best_shift


def vessel_hu(
    image: np.ndarray, label: np.ndarray | None, covered: np.ndarray | None = None
) -> dict[str, float | None]:
    """Mean HU inside the aorta and portal vein labels (None where fewer than
    :data:`MIN_VESSEL_VOXELS` covered voxels hold the label)."""
    out: dict[str, float | None] = {"aorta": None, "portal_vein": None}
    if label is None:
        return out
    for name, value in (("aorta", AORTA), ("portal_vein", PORTAL_VEIN)):
        mask = label == value
        if covered is not None:
            mask &= covered
        if int(np.count_nonzero(mask)) >= MIN_VESSEL_VOXELS:
            out[name] = round(float(image[mask].mean(dtype=np.float64)), 1)
    return out


def vessel_label(cases: Sequence[Case]) -> np.ndarray | None:
    """The label the vessels are measured in: the first annotation (by case id) that holds aorta or
    portal vein voxels; None when none does."""
    for case in sorted(cases, key=lambda c: c.case_id):
        if np.any((case.label == AORTA) | (case.label == PORTAL_VEIN)):
            return case.label
    return None


def phase_channels(
    pairing: Pairing,
    cases: Sequence[Case],
    config: BuildConfig,
    storage_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[PhaseChannel], list[str]]:
    """(The annotated image's own ``phases`` entry, the phase channels, warnings) of one image.

    ``cases`` are the image's annotations on the stored grid (resampled); their image is channel 0.
    """
    reference = cases[0]
    grid = reference.geometry
    label = vessel_label(cases)
    warnings: list[str] = []
    decoded: list[tuple[PhaseSource, np.ndarray, np.ndarray]] = []
    for source in pairing.phase_sources:
        try:
            raw = decode_ct(source.ct_headers, source.slices, config, storage_options)
        except QuarantineError as exc:
            warnings.append(f"phase_channel_skipped:{source.key}:{exc.code}")
            continue
        image, covered = resample_onto(raw, source.geometry, grid)
        del raw
        decoded.append((source, image, covered))
    evidence = [
        _evidence("0", pairing.ct_headers[0], pairing.acquisition_number, vessel_hu(reference.image, label))
    ]
    for n, (source, image, covered) in enumerate(decoded, start=1):
        evidence.append(
            _evidence(str(n), source.first, source.acquisition_number, vessel_hu(image, label, covered))
        )
    calls = assign_phases(evidence)
    own = {
        "array": "0",
        "series_instance_uid": pairing.ct_series_instance_uid,
        "acquisition_number": pairing.acquisition_number,
        "series_description": pairing.ct_headers[0].series_description,
        **calls[0].to_dict(),
        "vessel_hu": {"aorta": evidence[0].aorta_hu, "portal_vein": evidence[0].portal_vein_hu},
        "coverage": 1.0,
        "consistency_ncc": 1.0,
        "motion_shift_mm": [0.0, 0.0, 0.0],
        "flags": [],
    }
    channels = []
    for n, ((source, image, covered), call) in enumerate(zip(decoded, calls[1:], strict=True), start=1):
        coverage = float(np.count_nonzero(covered)) / covered.size
        ncc, shift = rigid_check(reference.image, image, covered, grid.spacing)
        flags = []
        if coverage < FULL_COVERAGE:
            flags.append("partial_coverage")
        if ncc is None:
            flags.append("consistency_unchecked")
        elif any(shift):
            flags.append("moved")
        attrs = {
            "array": f"{PHASES_GROUP}/{n}",
            "series_instance_uid": source.series_instance_uid,
            "acquisition_number": source.acquisition_number,
            "series_description": source.first.series_description,
            **call.to_dict(),
            "vessel_hu": {"aorta": evidence[n].aorta_hu, "portal_vein": evidence[n].portal_vein_hu},
            "coverage": round(coverage, 6),
            "consistency_ncc": None if ncc is None else round(ncc, 4),
            "motion_shift_mm": list(shift),
            "flags": flags,
            "source_geometry": source.geometry.to_dict(),
            "sha256": hashlib.sha256(np.ascontiguousarray(image, dtype="<i2").data).hexdigest(),
        }
        channels.append(PhaseChannel(image=image, attrs=attrs))
    return own, channels, warnings


def _evidence(
    key: str, h: InstanceHeader, acquisition: int | None, hu: dict[str, float | None]
) -> PhaseEvidence:
    return PhaseEvidence(
        key=key,
        series_description=h.series_description,
        series_number=h.series_number,
        acquisition_number=acquisition,
        acquisition_time=h.acquisition_time,
        contrast_bolus_agent=h.contrast_bolus_agent,
        contrast_bolus_start_time=h.contrast_bolus_start_time,
        aorta_hu=hu["aorta"],
        portal_vein_hu=hu["portal_vein"],
    )

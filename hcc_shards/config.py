"""One documented configuration object for the build. Passed explicitly; no environment globals."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from hcc_shards.annotation import ANNOTATION_SOURCES
from hcc_shards.errors import ConfigError
from hcc_shards.format import FORMAT_VERSION  # defined there; kept importable from here
from hcc_shards.labels import AORTA, LIVER, OVERLAP_PRIORITY, PORTAL_VEIN, TUMOR

PHASE_OPTIONS: tuple[str, ...] = ("none", "all")
"""Values of ``BuildConfig.phases`` (and ``--phases``)."""

DEFAULT_SEGMENT_SYNONYMS: tuple[tuple[str, int], ...] = (
    ("liver", LIVER),
    ("mass", TUMOR),
    ("tumor", TUMOR),
    ("tumour", TUMOR),
    ("necrosis", TUMOR),
    ("neoplasm", TUMOR),
    ("lesion", TUMOR),
    ("portal vein", PORTAL_VEIN),
    ("portalvein", PORTAL_VEIN),
    ("portal_vein", PORTAL_VEIN),
    ("aorta", AORTA),
    ("abdominal aorta", AORTA),
)
"""Segment label text (lower case, stripped) -> label value; used after the SNOMED CT codes."""

DEFAULT_SEGMENT_CODES: tuple[tuple[str, int], ...] = (
    # SNOMED CT concept ids (SCT) and their legacy SRT equivalents.
    ("SCT:10200004", LIVER),
    ("SRT:T-62000", LIVER),
    ("SCT:4147007", TUMOR),  # Mass
    ("SRT:M-03000", TUMOR),
    ("SCT:108369006", TUMOR),  # Neoplasm
    ("SRT:M-80003", TUMOR),
    ("SCT:86049000", TUMOR),  # Malignant neoplasm, primary
    ("SCT:6574001", TUMOR),  # Necrosis
    ("SCT:32764006", PORTAL_VEIN),
    ("SRT:T-48810", PORTAL_VEIN),
    ("SCT:7832008", AORTA),  # Abdominal aorta
    ("SRT:T-42500", AORTA),
    ("SCT:15825003", AORTA),  # Aorta
    ("SRT:T-42000", AORTA),
)
"""(scheme:code) of SegmentedPropertyType -> label value; checked before label text."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what the build writes. Its hash names the dataset version."""

    target_spacing: tuple[float, float, float] | None = None
    """Target spacing (z, y, x) in mm; None means 'auto' from the dataset fingerprint."""
    image_interpolation: Literal["linear", "cubic"] = "linear"
    label_interpolation: Literal["label_safe", "nearest"] = "label_safe"
    anisotropy_threshold: float = 3.0
    """nnU-Net's rule: when max/min spacing exceeds this, the coarse axis is resampled separately."""
    fractional_threshold: float = 0.5
    """FRACTIONAL SEG: a voxel belongs to a segment when value / MaximumFractionalValue >= this."""
    segment_codes: tuple[tuple[str, int], ...] = DEFAULT_SEGMENT_CODES
    segment_synonyms: tuple[tuple[str, int], ...] = DEFAULT_SEGMENT_SYNONYMS
    overlap_priority: tuple[int, ...] = OVERLAP_PRIORITY
    position_tolerance_mm: float = 0.05
    """Two slice positions closer than this are the same position (rounding jitter)."""
    spacing_tolerance: float = 0.05
    """Relative deviation of a slice step from the median step still accepted as uniform."""
    hu_clip: tuple[int, int] = (-1024, 3071)
    """HU values are clipped into this range before the int16 cast (documented in FORMAT.md)."""
    max_voxels: int = 1024 * 1024 * 1024
    """Inputs declaring more voxels than this are quarantined as image_too_large (memory bomb)."""
    chunk_shape: tuple[int, int, int] = (32, 64, 64)
    """Inner (read) chunk of the Zarr arrays, (z, y, x)."""
    shard_shape: tuple[int, int, int] = (128, 512, 512)
    """Shard (stored object) shape, a multiple of chunk_shape; clipped to the array."""
    compressor: Literal["zstd", "blosc"] = "blosc"
    """Inner-chunk compressor: 'blosc' (lz4 + image_shuffle, chosen by measurement, docs/FORMAT.md) or 'zstd'."""
    compression_level: int = 5
    image_shuffle: Literal["shuffle", "bitshuffle"] = "bitshuffle"
    """blosc filter of the int16 image. Labels (one byte per voxel) always use 'shuffle', a no-op there."""
    class_locations_samples: int = 10_000
    """At least this many (or class_locations_fraction of the voxels) foreground locations per class."""
    class_locations_fraction: float = 0.01
    seed: int = 0
    """Seed of everything random in the build (class location sampling, split)."""
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Patient-level train/val/test fractions."""
    pseudonymize_key: str = field(default="", repr=False)
    """When set, patient and study identifiers are replaced by a keyed hash."""
    annotation_sources: tuple[str, ...] = ANNOTATION_SOURCES
    """Annotation sources built (``manual``, ``ai``, ``ai_corrected``, ``unknown``); SEGs of other
    sources are left out, not quarantined. Default: all."""
    analysis_result_ids: tuple[tuple[str, str], ...] = ()
    """(SEG SeriesInstanceUID, IDC analysis_result_id) of SEGs that belong to an IDC analysis result
    (e.g. ``bamf_aimi_annotations``); an input of the annotation-source rule (hcc_shards.annotation)."""
    stratify_by: str = ""
    """Clinical column the split is stratified by (quantile bins when continuous); '' for none."""
    folds: int = 0
    """Cross-validation folds assigned to the patients outside test (manifest ``fold``); 0 for none."""
    split_file_sha256: str = ""
    """sha256 of the split file (nnU-Net ``splits_final.json``) the splits are taken from; '' for none."""
    features: bool = False
    """Compute radiomics features per case and label (``features.parquet``, docs/FEATURES.md)."""
    phases: Literal["none", "all"] = "none"
    """``all``: store the study's other CT acquisitions (same FrameOfReferenceUID) resampled onto each
    annotated image as phase channels, each with its contrast phase (docs/PHASES.md); ``none``: the
    annotated image only. Left out of :meth:`to_dict` (and so of the hash) when ``none``, so such a
    build is the same version as one made before the field existed."""

    def __post_init__(self) -> None:
        if self.target_spacing is not None:
            ts = tuple(float(v) for v in self.target_spacing)
            if len(ts) != 3 or any(v <= 0 for v in ts):
                raise ConfigError(
                    f"target_spacing must be three positive mm values (z, y, x), got {self.target_spacing!r}"
                )
            object.__setattr__(self, "target_spacing", ts)
        if not 0.0 < self.fractional_threshold <= 1.0:
            raise ConfigError(f"fractional_threshold must be in (0, 1], got {self.fractional_threshold}")
        for cs, ss in zip(self.chunk_shape, self.shard_shape, strict=True):
            if cs <= 0 or ss % cs:
                raise ConfigError(
                    f"shard_shape {self.shard_shape} must be a multiple of chunk_shape {self.chunk_shape}"
                )
        if abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise ConfigError(f"split_fractions must sum to 1, got {self.split_fractions}")
        if self.folds < 0 or self.folds == 1:
            raise ConfigError(f"folds must be 0 (none) or at least 2, got {self.folds}")
        if self.image_interpolation not in ("linear", "cubic"):
            raise ConfigError(
                f"image_interpolation must be 'linear' or 'cubic', got {self.image_interpolation!r}"
            )
        if self.label_interpolation not in ("label_safe", "nearest"):
            raise ConfigError(
                f"label_interpolation must be 'label_safe' or 'nearest', got {self.label_interpolation!r}"
            )
        if self.compressor not in ("zstd", "blosc"):
            raise ConfigError(f"compressor must be 'zstd' or 'blosc', got {self.compressor!r}")
        if self.image_shuffle not in ("shuffle", "bitshuffle"):
            raise ConfigError(f"image_shuffle must be 'shuffle' or 'bitshuffle', got {self.image_shuffle!r}")
        if self.phases not in PHASE_OPTIONS:
            raise ConfigError(f"phases must be one of {list(PHASE_OPTIONS)}, got {self.phases!r}")
        bad = [s for s in self.annotation_sources if s not in ANNOTATION_SOURCES]
        if bad or not self.annotation_sources:
            raise ConfigError(
                f"annotation_sources must be a non-empty subset of {list(ANNOTATION_SOURCES)}, "
                f"got {list(self.annotation_sources)}"
            )
        object.__setattr__(
            self, "annotation_sources", tuple(s for s in ANNOTATION_SOURCES if s in self.annotation_sources)
        )
        object.__setattr__(
            self, "analysis_result_ids", tuple(sorted((str(k), str(v)) for k, v in self.analysis_result_ids))
        )

    def analysis_result_id(self, seg_series_instance_uid: str) -> str:
        """The IDC analysis result the SEG series belongs to ('' when none is known)."""
        return dict(self.analysis_result_ids).get(seg_series_instance_uid, "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("pseudonymize_key")
        if self.phases == "none":
            d.pop("phases")
        d["pseudonymized"] = bool(self.pseudonymize_key)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - {"pseudonymized"}
        if unknown:
            raise ConfigError(f"unknown BuildConfig fields {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for k, v in data.items():
            if k == "pseudonymized":
                continue
            kw[k] = _tuplify(v)
        return cls(**kw)

    def config_hash(self) -> str:
        """12 hex digits over every field that changes the output (the key itself is not stored)."""
        d = self.to_dict()
        if self.pseudonymize_key:
            d["pseudonymize_key_sha"] = hashlib.sha256(self.pseudonymize_key.encode()).hexdigest()
        blob = json.dumps({"format_version": FORMAT_VERSION, **d}, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def with_target_spacing(self, spacing: tuple[float, float, float]) -> BuildConfig:
        return replace(self, target_spacing=tuple(float(v) for v in spacing))


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v

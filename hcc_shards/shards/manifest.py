"""Manifest rows (one per case), their parquet I/O, and the patient-level split."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hcc_shards import storage
from hcc_shards.errors import FormatError
from hcc_shards.labels import LABELS
from hcc_shards.shards.atomic import put_bytes_atomic

__all__ = [
    "MANIFEST_COLUMNS",
    "MANIFEST_SCHEMA",
    "SPLITS",
    "ManifestRow",
    "patient_draw",
    "read_manifest",
    "split_for_patient",
    "write_parquet",
]

SPLITS: tuple[str, str, str] = ("train", "val", "test")

_Vec3 = tuple[float, float, float]
_Box = tuple[tuple[int, int, int], tuple[int, int, int]]


@dataclass(frozen=True)
class ManifestRow:
    """One committed case: identifiers, grid, label statistics, split and checksum (docs/FORMAT.md)."""

    case_id: str
    """Stable id, ``<patient_id>_<8 hex of the SEG SOP Instance UID>``."""
    patient_id: str
    study_instance_uid: str
    ct_series_instance_uid: str
    ct_acquisition_number: int | None
    """AcquisitionNumber of the CT slices used; None for a single unnumbered acquisition."""
    seg_sop_instance_uid: str
    path: str
    """The annotation's label image relative to the version root: ``images/<image_id>/labels/<case_id>``
    (format 1: its case group ``cases/<case_id>``)."""
    shape_zyx: tuple[int, int, int]
    """Shape of the stored (resampled) arrays."""
    spacing_zyx: _Vec3
    """Stored grid spacing, mm."""
    origin_lps: _Vec3
    """LPS mm of the centre of voxel (0, 0, 0)."""
    direction: tuple[_Vec3, _Vec3, _Vec3]
    """3 rows of the 3x3 direction matrix; column a is the LPS unit vector of array axis a."""
    source_shape_zyx: tuple[int, int, int]
    """Shape of the CT grid before resampling."""
    source_spacing_zyx: _Vec3
    """CT spacing before resampling, mm."""
    voxels_liver: int | None
    """Label voxel counts in the stored grid; None when the annotation does not define the label."""
    voxels_tumor: int | None
    voxels_portal_vein: int | None
    voxels_aorta: int | None
    volume_ml_liver: float | None
    """``voxels_* x`` stored voxel volume, millilitres; None when not annotated."""
    volume_ml_tumor: float | None
    volume_ml_portal_vein: float | None
    volume_ml_aorta: float | None
    hu_p005: float
    """0.5th percentile of HU over the labelled (non-background) voxels; NaN when there are none."""
    hu_mean: float
    """Mean HU over the labelled voxels."""
    hu_p995: float
    """99.5th percentile of HU over the labelled voxels."""
    split: str
    """``train``, ``val`` or ``test`` (patient-level)."""
    qc_flags: tuple[str, ...]
    """Quality findings that are not errors."""
    warnings: tuple[str, ...]
    """Non-fatal findings of decoding and pairing."""
    checksum: str
    """sha256 of the case content (docs/FORMAT.md), equal to ``_COMPLETE.json``'s."""
    bbox_liver: _Box | None
    """Inclusive-exclusive voxel bounds ((z0, y0, x0), (z1, y1, x1)); None when the label is absent."""
    bbox_tumor: _Box | None
    bbox_portal_vein: _Box | None
    bbox_aorta: _Box | None
    source_volume_ml_liver: float | None
    """Label volume on the CT grid as acquired (voxels x CT voxel volume), before resampling, ml;
    None when not annotated."""
    source_volume_ml_tumor: float | None
    source_volume_ml_portal_vein: float | None
    source_volume_ml_aorta: float | None
    image_id: str = ""
    """Id of the stored CT image this annotation labels (shared by every annotation of that image)."""
    image_path: str = ""
    """Image group path relative to the version root: ``images/<image_id>``."""
    annotation_source: str = "unknown"
    """``manual``, ``ai``, ``ai_corrected`` or ``unknown`` (hcc_shards.annotation)."""
    segment_algorithm_type: str = ""
    """Distinct SegmentAlgorithmType values of the SEG's segments, sorted, joined by ','."""
    seg_series_description: str = ""
    seg_manufacturer: str = ""
    content_creator: str = ""
    """ContentCreatorName of the SEG ('' when absent or pseudonymised)."""
    analysis_result_id: str = ""
    """IDC analysis_result_id of the SEG series, when the build was given one."""
    annotated_labels: tuple[str, ...] = tuple(lab.name for lab in LABELS)
    """Labels the SEG defines, in label order; the other labels are not annotated (null counts)."""
    seg_series_instance_uid: str = ""
    reference_case_id: str = ""
    """For an annotation that is not manual: the manual annotation of the same image it is compared
    with (the first by case_id); '' when the image has none (or this one is manual)."""
    dice_liver: float | None = None
    """Dice of this annotation's label against the reference's on the stored grid; None when there
    is no reference or either does not define the label."""
    dice_tumor: float | None = None
    dice_portal_vein: float | None = None
    dice_aorta: float | None = None
    fold: int | None = None
    """Cross-validation fold (0-based) of a patient outside test; None when the build assigns no folds."""
    phases: tuple[str, ...] = ()
    """Phase of each stored channel of the image, channel 0 (the annotated image) first
    (docs/PHASES.md); empty without ``--phases all``."""
    phase_confidence: tuple[float, ...] = ()
    """Confidence of each entry of ``phases``, in [0, 1]."""
    phase_flags: tuple[str, ...] = ()
    """``<channel>:<flag>`` for each flag of a phase channel (``partial_coverage``, ``moved``,
    ``consistency_unchecked``)."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise FormatError(f"split must be one of {SPLITS}, got {self.split!r} for case {self.case_id}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with lists for tuples; keys are :data:`MANIFEST_COLUMNS`."""
        return {k: _listify(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestRow:
        data = {**{c: [] for c in ADDED_COLUMNS if c not in data}, **data}
        missing = [c for c in MANIFEST_COLUMNS if c not in data]
        extra = [c for c in data if c not in MANIFEST_COLUMNS]
        if missing or extra:
            raise FormatError(f"manifest row columns: missing {missing}, unexpected {extra}")
        kw = dict(data)
        for name in ("shape_zyx", "source_shape_zyx"):
            kw[name] = tuple(int(v) for v in kw[name])
        for name in ("spacing_zyx", "origin_lps", "source_spacing_zyx"):
            kw[name] = tuple(float(v) for v in kw[name])
        kw["direction"] = tuple(tuple(float(v) for v in row) for row in kw["direction"])
        for name in ("qc_flags", "warnings", "annotated_labels"):
            kw[name] = tuple(str(v) for v in (kw[name] or ()))
        for lab in LABELS:
            box = kw[f"bbox_{lab.name}"]
            kw[f"bbox_{lab.name}"] = None if box is None else tuple(tuple(int(v) for v in c) for c in box)
            for prefix, kind in (("voxels", int), ("volume_ml", float), ("source_volume_ml", float)):
                v = kw[f"{prefix}_{lab.name}"]
                kw[f"{prefix}_{lab.name}"] = None if v is None else kind(v)
        for lab in LABELS:
            v = kw[f"dice_{lab.name}"]
            kw[f"dice_{lab.name}"] = None if v is None else float(v)
        an = kw["ct_acquisition_number"]
        kw["ct_acquisition_number"] = None if an is None else int(an)
        for name in ("hu_p005", "hu_mean", "hu_p995"):
            kw[name] = float(kw[name])
        kw["fold"] = None if kw["fold"] is None else int(kw["fold"])
        kw["phases"] = tuple(str(v) for v in (kw["phases"] or ()))
        kw["phase_confidence"] = tuple(float(v) for v in (kw["phase_confidence"] or ()))
        kw["phase_flags"] = tuple(str(v) for v in (kw["phase_flags"] or ()))
        return cls(**kw)

    def annotates(self, name: str) -> bool:
        """Whether this annotation defines label ``name`` (else its counts are None, not 0)."""
        return name in self.annotated_labels

    def voxels(self, name: str) -> int | None:
        v = getattr(self, f"voxels_{name}")
        return None if v is None else int(v)

    def volume_ml(self, name: str, *, grid: str = "stored") -> float | None:
        """Label volume in ml on the ``stored`` grid or on the CT (``source``) grid; None when not annotated."""
        if grid not in ("stored", "source"):
            raise ValueError(f"grid must be 'stored' or 'source', got {grid!r}")
        prefix = "source_volume_ml" if grid == "source" else "volume_ml"
        v = getattr(self, f"{prefix}_{name}")
        return None if v is None else float(v)


MANIFEST_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ManifestRow))
"""Column names of manifest.parquet, in order (fixed by docs/FORMAT.md)."""
ADDED_COLUMNS: tuple[str, ...] = ("phases", "phase_confidence", "phase_flags")
"""Columns added to format 2 after its first datasets (an addition, docs/FORMAT.md): a row or a
completion marker written before them reads as empty lists."""

_I3 = pa.list_(pa.int64())
_F3 = pa.list_(pa.float64())
_BOX = pa.list_(pa.list_(pa.int64()))
MANIFEST_SCHEMA = pa.schema(
    [
        ("case_id", pa.string()),
        ("patient_id", pa.string()),
        ("study_instance_uid", pa.string()),
        ("ct_series_instance_uid", pa.string()),
        ("ct_acquisition_number", pa.int64()),
        ("seg_sop_instance_uid", pa.string()),
        ("path", pa.string()),
        ("shape_zyx", _I3),
        ("spacing_zyx", _F3),
        ("origin_lps", _F3),
        ("direction", pa.list_(_F3)),
        ("source_shape_zyx", _I3),
        ("source_spacing_zyx", _F3),
        *[(f"voxels_{lab.name}", pa.int64()) for lab in LABELS],
        *[(f"volume_ml_{lab.name}", pa.float64()) for lab in LABELS],
        ("hu_p005", pa.float64()),
        ("hu_mean", pa.float64()),
        ("hu_p995", pa.float64()),
        ("split", pa.string()),
        ("qc_flags", pa.list_(pa.string())),
        ("warnings", pa.list_(pa.string())),
        ("checksum", pa.string()),
        *[(f"bbox_{lab.name}", _BOX) for lab in LABELS],
        *[(f"source_volume_ml_{lab.name}", pa.float64()) for lab in LABELS],
        ("image_id", pa.string()),
        ("image_path", pa.string()),
        ("annotation_source", pa.string()),
        ("segment_algorithm_type", pa.string()),
        ("seg_series_description", pa.string()),
        ("seg_manufacturer", pa.string()),
        ("content_creator", pa.string()),
        ("analysis_result_id", pa.string()),
        ("annotated_labels", pa.list_(pa.string())),
        ("seg_series_instance_uid", pa.string()),
        ("reference_case_id", pa.string()),
        *[(f"dice_{lab.name}", pa.float64()) for lab in LABELS],
        ("fold", pa.int64()),
        ("phases", pa.list_(pa.string())),
        ("phase_confidence", pa.list_(pa.float64())),
        ("phase_flags", pa.list_(pa.string())),
    ]
)
"""Arrow schema of manifest.parquet; its names are :data:`MANIFEST_COLUMNS`."""

if tuple(MANIFEST_SCHEMA.names) != MANIFEST_COLUMNS:  # pragma: no cover - import-time contract check
    raise FormatError(f"manifest schema {MANIFEST_SCHEMA.names} != row fields {MANIFEST_COLUMNS}")


def split_for_patient(patient_id: str, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """``train``, ``val`` or ``test`` from a keyed hash of the patient: deterministic, patient-level."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    u = patient_draw(patient_id, seed)
    edge = 0.0
    for name, frac in zip(SPLITS, fractions, strict=True):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


def patient_draw(patient_id: str, seed: int) -> float:
    """``u`` in [0, 1) from a keyed hash of the patient (docs/FORMAT.md, ``split``): the order of splits."""
    digest = hashlib.sha256(f"hcc-shards-split:{int(seed)}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def rows_to_table(rows: Sequence[ManifestRow]) -> pa.Table:
    """Rows sorted by case_id as an Arrow table with :data:`MANIFEST_SCHEMA`."""
    ordered = sorted(rows, key=lambda r: r.case_id)
    dupes = sorted({r.case_id for r in ordered if sum(1 for s in ordered if s.case_id == r.case_id) > 1})
    if dupes:
        raise FormatError(f"manifest rows must have unique case_id; duplicated: {dupes[:5]}")
    return pa.Table.from_pylist([r.to_dict() for r in ordered], schema=MANIFEST_SCHEMA)


def write_parquet(table: pa.Table, url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``table`` to ``url`` in one put (local: temporary file, then rename)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    put_bytes_atomic(url, buf.getvalue(), storage_options)


def read_manifest(url: str, storage_options: dict[str, Any] | None = None) -> list[ManifestRow]:
    """Rows of a manifest.parquet, checking its columns."""
    fs, path = storage.filesystem(url, storage_options)
    with fs.open(path, "rb") as f:
        table = pq.read_table(f)
    if tuple(table.column_names) != MANIFEST_COLUMNS:
        raise FormatError(
            f"{url}: manifest columns {table.column_names} != expected {list(MANIFEST_COLUMNS)}"
        )
    return [ManifestRow.from_dict(d) for d in table.to_pylist()]


def _listify(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_listify(x) for x in v]
    return v

"""Ground truth of a synthetic cohort: what a correct build must find, patient by patient.

Voxel counts are taken on the grid of the annotated CT series and acquisition, with overlapping
segments resolved Mass > Portal vein > Abdominal aorta > Liver (hcc_shards.labels.OVERLAP_PRIORITY).
When the SEG lies on its own grid (quirk ``seg_other_grid``) the counts are those of the
label-safe mapping: every CT voxel centre takes the label of the SEG voxel whose centre is
nearest to it in world (LPS) coordinates, i.e. the SEG index ``floor(i + 0.5)`` of the continuous
index ``i`` of that centre in the SEG grid, and background where that index falls outside the
SEG grid or on a slice with no frame.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hcc_shards.geometry import Geometry
from hcc_shards.labels import LABELS
from hcc_shards.storage import filesystem

TRUTH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SeriesTruth:
    """One CT series as written."""

    series_instance_uid: str
    series_number: int
    description: str
    kind: str
    """'axial', 'localizer' or 'derived'."""
    acquisition_numbers: tuple[int, ...]
    instances: int
    """Number of files (slices x acquisitions)."""
    geometry: Geometry
    """Grid of each acquisition."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["acquisition_numbers"] = list(self.acquisition_numbers)
        d["geometry"] = self.geometry.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesTruth:
        return cls(
            series_instance_uid=data["series_instance_uid"],
            series_number=int(data["series_number"]),
            description=data["description"],
            kind=data["kind"],
            acquisition_numbers=tuple(int(a) for a in data["acquisition_numbers"]),
            instances=int(data["instances"]),
            geometry=Geometry.from_dict(data["geometry"]),
        )


@dataclass(frozen=True)
class SegTruth:
    """One SEG as written (IDC edition: the manual one and every AIMI one) and what a build makes of it."""

    seg_series_instance_uid: str
    seg_sop_instance_uid: str
    series_description: str
    ct_series_instance_uid: str
    """The CT series the SEG annotates: the case's CT series."""
    ct_acquisition_number: int
    expected_annotation_source: str
    """'manual', 'ai' or 'ai_corrected' (hcc_shards.annotation)."""
    annotated_labels: tuple[str, ...]
    """Label names the SEG defines, in label order; the others have null voxels in the manifest."""
    voxels: tuple[tuple[str, int], ...]
    """(label name, voxels on the CT grid) of every annotated label."""
    expected_case: bool
    """True when a correct build makes a case of this SEG."""
    expected_pairing: str
    """'referenced_series' or 'frame_of_reference_geometry'."""

    @property
    def voxel_counts(self) -> dict[str, int]:
        return dict(self.voxels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["annotated_labels"] = list(self.annotated_labels)
        d["voxels"] = dict(self.voxels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegTruth:
        return cls(
            seg_series_instance_uid=data["seg_series_instance_uid"],
            seg_sop_instance_uid=data["seg_sop_instance_uid"],
            series_description=data["series_description"],
            ct_series_instance_uid=data["ct_series_instance_uid"],
            ct_acquisition_number=int(data["ct_acquisition_number"]),
            expected_annotation_source=data["expected_annotation_source"],
            annotated_labels=tuple(data["annotated_labels"]),
            voxels=tuple((str(k), int(v)) for k, v in data["voxels"].items()),
            expected_case=bool(data["expected_case"]),
            expected_pairing=data["expected_pairing"],
        )


@dataclass(frozen=True)
class PatientTruth:
    """What the generator wrote for one patient, and what a correct build makes of it."""

    patient_id: str
    quirk: str
    """A :class:`hcc_shards.synth.plan.Quirk` value."""
    study_instance_uids: tuple[str, ...]
    """Both studies, pre-TACE first."""
    series: tuple[SeriesTruth, ...]
    """Every CT series of both studies."""
    seg_sop_instance_uid: str | None
    seg_series_instance_uid: str | None
    ct_study_instance_uid: str | None
    """Study of the annotated CT (and of the SEG)."""
    ct_series_instance_uid: str | None
    ct_acquisition_number: int | None
    ct_geometry: Geometry | None
    """Grid of the annotated CT acquisition; voxel counts are on it."""
    voxels: tuple[tuple[str, int], ...]
    """(label name, voxel count) for liver, tumor, portal_vein, aorta; empty without a SEG."""
    expected_case: bool
    """True when a correct build makes a case of this patient."""
    expected_reason: str | None
    """The hcc_shards.quarantine.Reason a correct build records, or None."""
    expected_pairing: str | None
    """How a correct build pairs the SEG: 'referenced_series' or 'frame_of_reference_geometry'."""
    expected_qc_flags: tuple[str, ...]
    files: int
    """Files written for this patient."""
    bytes: int
    """Bytes written for this patient."""
    segs: tuple[SegTruth, ...] = ()
    """IDC edition: every SEG of the patient (manual first, then AIMI); empty in the TCIA edition,
    whose one SEG the fields above describe."""
    seconds: float = field(default=0.0, compare=False)
    """Wall time spent generating it; not stored, so truth files stay byte-identical across runs."""

    @property
    def voxel_counts(self) -> dict[str, int]:
        return dict(self.voxels)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "patient_id": self.patient_id,
            "quirk": self.quirk,
            "study_instance_uids": list(self.study_instance_uids),
            "series": [s.to_dict() for s in self.series],
            "seg_sop_instance_uid": self.seg_sop_instance_uid,
            "seg_series_instance_uid": self.seg_series_instance_uid,
            "ct_study_instance_uid": self.ct_study_instance_uid,
            "ct_series_instance_uid": self.ct_series_instance_uid,
            "ct_acquisition_number": self.ct_acquisition_number,
            "ct_geometry": None if self.ct_geometry is None else self.ct_geometry.to_dict(),
            "voxels": dict(self.voxels),
            "expected_case": self.expected_case,
            "expected_reason": self.expected_reason,
            "expected_pairing": self.expected_pairing,
            "expected_qc_flags": list(self.expected_qc_flags),
            "files": self.files,
            "bytes": self.bytes,
        }
        if self.segs:  # absent in the TCIA edition, whose truth files stay as they were
            d["segs"] = [s.to_dict() for s in self.segs]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatientTruth:
        geometry = data.get("ct_geometry")
        return cls(
            patient_id=data["patient_id"],
            quirk=data["quirk"],
            study_instance_uids=tuple(data["study_instance_uids"]),
            series=tuple(SeriesTruth.from_dict(s) for s in data["series"]),
            seg_sop_instance_uid=data.get("seg_sop_instance_uid"),
            seg_series_instance_uid=data.get("seg_series_instance_uid"),
            ct_study_instance_uid=data.get("ct_study_instance_uid"),
            ct_series_instance_uid=data.get("ct_series_instance_uid"),
            ct_acquisition_number=data.get("ct_acquisition_number"),
            ct_geometry=None if geometry is None else Geometry.from_dict(geometry),
            voxels=tuple((str(k), int(v)) for k, v in (data.get("voxels") or {}).items()),
            expected_case=bool(data["expected_case"]),
            expected_reason=data.get("expected_reason"),
            expected_pairing=data.get("expected_pairing"),
            expected_qc_flags=tuple(data.get("expected_qc_flags") or ()),
            files=int(data["files"]),
            bytes=int(data["bytes"]),
            segs=tuple(SegTruth.from_dict(s) for s in data.get("segs") or ()),
        )


@dataclass(frozen=True)
class CohortTruth:
    """Ground truth of a whole synthetic cohort."""

    seed: int
    size: str
    layout: str
    patients: tuple[PatientTruth, ...]
    """In PatientID order."""
    format_version: int = TRUTH_FORMAT_VERSION
    edition: str = "tcia"
    """'tcia' or 'idc' (hcc_shards.synth.plan.EDITIONS)."""

    @property
    def segs(self) -> tuple[SegTruth, ...]:
        """Every SEG of the IDC edition, patient by patient."""
        return tuple(s for p in self.patients for s in p.segs)

    def segs_by_source(self) -> dict[str, int]:
        """Expected cases per annotation_source (IDC edition)."""
        counts: dict[str, int] = {}
        for s in self.segs:
            if s.expected_case:
                counts[s.expected_annotation_source] = counts.get(s.expected_annotation_source, 0) + 1
        return dict(sorted(counts.items()))

    def patient(self, patient_id: str) -> PatientTruth:
        for p in self.patients:
            if p.patient_id == patient_id:
                return p
        raise KeyError(
            f"no patient {patient_id!r} in the truth; have {[p.patient_id for p in self.patients]}"
        )

    def by_quirk(self, quirk: str) -> tuple[PatientTruth, ...]:
        return tuple(p for p in self.patients if p.quirk == str(quirk))

    @property
    def files(self) -> int:
        return sum(p.files for p in self.patients)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.patients)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format_version": self.format_version,
            "seed": self.seed,
            "size": self.size,
            "layout": self.layout,
        }
        if self.edition != "tcia":
            d["edition"] = self.edition
        d["patients"] = [p.to_dict() for p in self.patients]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CohortTruth:
        version = data.get("format_version")
        if version != TRUTH_FORMAT_VERSION:
            raise ValueError(f"truth format_version must be {TRUTH_FORMAT_VERSION}, got {version!r}")
        return cls(
            seed=int(data["seed"]),
            size=data["size"],
            layout=data["layout"],
            patients=tuple(PatientTruth.from_dict(p) for p in data["patients"]),
            edition=data.get("edition", "tcia"),
        )


def count_labels(labels: np.ndarray) -> tuple[tuple[str, int], ...]:
    """(name, voxel count) of every foreground label of a uint8 label map."""
    counts = np.bincount(labels.ravel(), minlength=max(lab.value for lab in LABELS) + 1)
    return tuple((lab.name, int(counts[lab.value])) for lab in LABELS)


def nearest_label_map(labels: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """``labels`` on ``source`` sampled at the voxel centres of ``target`` by world nearest neighbour."""
    if labels.shape != source.shape:
        raise ValueError(f"labels shape {labels.shape} != source grid shape {source.shape}")
    out = np.zeros(target.shape, dtype=labels.dtype)
    nz, ny, nx = target.shape
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    for k in range(nz):
        idx = np.stack([np.full(jj.size, k), jj.ravel(), ii.ravel()], axis=1)
        src = np.floor(source.world_to_index(target.index_to_world(idx)) + 0.5).astype(np.int64)
        ok = np.all((src >= 0) & (src < np.asarray(source.shape)), axis=1)
        flat = np.zeros(jj.size, dtype=labels.dtype)
        flat[ok] = labels[src[ok, 0], src[ok, 1], src[ok, 2]]
        out[k] = flat.reshape(ny, nx)
    return out


def write_truth(truth: CohortTruth, url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write the truth as indented JSON to any fsspec URL."""
    fs, path = filesystem(url, storage_options)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, (json.dumps(truth.to_dict(), indent=1) + "\n").encode())


def load_truth(url: str, storage_options: dict[str, Any] | None = None) -> CohortTruth:
    """Read a truth file written by ``hcc-shards synth --truth``."""
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "rb") as f:
        return CohortTruth.from_dict(json.loads(f.read()))

"""A twin of an IDC collection: every patient, study and series of the index, at small pixel size.

``generate_twin(OUT, "idc://hcc_tace_seg")`` reads the IDC index (hcc_shards.idc, no network) and
writes, for every series it lists, as many instances as the index counts, with the real
PatientID, StudyInstanceUID, SeriesInstanceUID, SeriesNumber, SeriesDescription and study
metadata, in IDC's flat layout ``<crdc_series_uuid>/<instance uuid>.dcm``. CT slices show a
phantom abdomen (hcc_shards.synth.phantom) on a small in-plane grid; every SEG series becomes one
dcmqi-style SEG (hcc_shards.synth.dcmqi) over one CT series of its study:

- the manual SEG (no analysis result): Liver, Mass, Portal vein, Abdominal aorta;
- an AIMI SEG (an analysis result): Liver and Tumor, AUTOMATIC, or SEMIAUTOMATIC when its
  description says it was corrected by a radiologist.

The index does not say which CT series a SEG annotates, so the twin draws it: a study's AI SEGs
go on distinct CT series (the index never has more AI SEGs than CT series in a study), one of
them on the manual SEG's CT series in about half the studies that have both, and a corrected SEG
on the CT series of an AI SEG of its study. The truth file records every series and, per SEG,
its CT series, analysis result and expected annotation source.

Order of operations per patient (:func:`generate_twin_patient`, a pure function of the index
rows, the seed and the pixel size): plan geometry per CT series, render and write its slices,
then write every SEG planned on it.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from hcc_shards import idc
from hcc_shards.geometry import Geometry
from hcc_shards.storage import filesystem, protocol_of
from hcc_shards.synth.cohort import Target, _header_only, _Writer
from hcc_shards.synth.ct import render_series
from hcc_shards.synth.dcmqi import aimi_segments, dcmqi_seg, manual_segments
from hcc_shards.synth.layout import crdc_uuid
from hcc_shards.synth.phantom import draw_anatomy, label_map
from hcc_shards.synth.plan import PatientPlan, Quirk, SeriesPlan, StudyPlan
from hcc_shards.synth.truth import count_labels
from hcc_shards.synth.uids import derive_int, derive_uid

TWIN_TRUTH_FORMAT_VERSION = 1
DEFAULT_PIXELS = 32
"""In-plane size of the twin's slices (rows = columns); the real ones are 512."""
SOURCE_MANUAL = "manual"
SOURCE_AI = "ai"
SOURCE_AI_CORRECTED = "ai_corrected"
"""Expected annotation source of a SEG: the manual one, an AI prediction, an AI one corrected by
a radiologist (told apart by analysis_result_id and SeriesDescription)."""
_PRE_WORDS = ("PRE",)


def annotation_source(series: idc.IdcSeries) -> str:
    """The source a SEG series of the index stands for (see :data:`SOURCE_MANUAL` and the others)."""
    if not series.analysis_result_id:
        return SOURCE_MANUAL
    if "corrected" in series.series_description.lower():
        return SOURCE_AI_CORRECTED
    return SOURCE_AI


@dataclass(frozen=True)
class TwinSeg:
    """One SEG series of the index and the CT series the twin puts it on."""

    series: idc.IdcSeries
    ct_series_instance_uid: str
    sop_instance_uid: str
    source: str


@dataclass(frozen=True)
class TwinPatient:
    """Every index row of one patient, in index order, and the patient's 1-based position."""

    index: int
    rows: tuple[idc.IdcSeries, ...]

    @property
    def patient_id(self) -> str:
        return self.rows[0].patient_id


def twin_patients(selection: idc.IdcSelection) -> tuple[TwinPatient, ...]:
    """The selection's series grouped by patient, in PatientID order."""
    by_patient: dict[str, list[idc.IdcSeries]] = defaultdict(list)
    for s in selection.series:
        by_patient[s.patient_id].append(s)
    return tuple(TwinPatient(i, tuple(by_patient[p])) for i, p in enumerate(sorted(by_patient), start=1))


def _studies(patient: TwinPatient) -> list[tuple[str, list[idc.IdcSeries], list[idc.IdcSeries]]]:
    """(StudyInstanceUID, CT series, SEG series) per study, studies by date then UID."""
    studies: dict[str, tuple[list[idc.IdcSeries], list[idc.IdcSeries]]] = {}
    for s in patient.rows:
        cts, segs = studies.setdefault(s.study_instance_uid, ([], []))
        if s.modality.upper() == "CT":
            cts.append(s)
        elif s.modality.upper() == idc.SEG_MODALITY:
            segs.append(s)
    order = sorted(
        studies, key=lambda u: (next(r.study_date for r in patient.rows if r.study_instance_uid == u), u)
    )
    return [(u, sorted(studies[u][0], key=_series_order), studies[u][1]) for u in order]


def _series_order(s: idc.IdcSeries) -> tuple[int, str]:
    return (s.series_number if s.series_number is not None else 10**6, s.series_instance_uid)


def place_segs(patient: TwinPatient, seed: int) -> tuple[TwinSeg, ...]:
    """The CT series of every SEG of the patient (the index does not say; see the module docstring).

    A SEG in a study without CT series is not placed (it would reference nothing).
    """
    out: list[TwinSeg] = []
    for study_uid, cts, segs in _studies(patient):
        if not cts:
            continue

        def draw(*parts: object, n: int, study: str = study_uid) -> int:
            return derive_int(seed, patient.patient_id, study, *parts, modulo=n)

        annotated = [c for c in cts if 40 <= c.instance_count <= 185 and not _is_pre(c)] or cts
        manual_ct = annotated[draw("manual", n=len(annotated))].series_instance_uid
        shuffled = sorted(cts, key=lambda c: derive_int(seed, c.series_instance_uid, "order", modulo=2**31))
        has_manual = any(annotation_source(s) == SOURCE_MANUAL for s in segs)
        if has_manual and draw("on manual ct", n=2) == 0:
            shuffled.sort(key=lambda c: c.series_instance_uid != manual_ct)  # manual's CT first
        else:
            shuffled.sort(key=lambda c: c.series_instance_uid == manual_ct)  # manual's CT last
        ai_cts: list[str] = []
        for seg in sorted(segs, key=lambda s: (annotation_source(s), s.series_instance_uid)):
            source = annotation_source(seg)
            if source == SOURCE_MANUAL:
                ct = manual_ct
            elif source == SOURCE_AI:
                ct = shuffled[len(ai_cts) % len(shuffled)].series_instance_uid
                ai_cts.append(ct)
            else:
                ct = ai_cts[0] if ai_cts else shuffled[0].series_instance_uid
            sop = derive_uid(seed, patient.patient_id, seg.series_instance_uid, "seg-instance")
            out.append(TwinSeg(seg, ct, sop, source))
    return tuple(sorted(out, key=lambda t: t.series.series_instance_uid))


def _is_pre(series: idc.IdcSeries) -> bool:
    return any(w in series.series_description.upper().split() for w in _PRE_WORDS)


def plan_twin_patient(patient: TwinPatient, seed: int, pixels: int) -> PatientPlan:
    """The phantom patient whose studies and series have the index's UIDs, numbers and counts."""
    rng = np.random.default_rng([seed, patient.index, 0x7817])
    anatomy = draw_anatomy(rng, patient.index)
    body_fov = float(np.clip(2.0 * anatomy.body.axes_lp[0] + float(rng.uniform(20, 60)), 298.0, 501.0))
    studies = []
    for k, (study_uid, cts, _) in enumerate(_studies(patient)):
        first = next(r for r in patient.rows if r.study_instance_uid == study_uid)
        date = (first.study_date or "2000-01-01").replace("-", "")
        series = tuple(_series_plan(rng, anatomy, body_fov, pixels, ct, offset=i) for i, ct in enumerate(cts))
        studies.append(
            StudyPlan(
                study_uid=study_uid,
                frame_of_reference_uid=derive_uid(seed, patient.patient_id, study_uid, "for"),
                date=date,
                time=f"{8 + k % 9:02d}3000",
                description=first.study_description,
                accession=f"{derive_int(seed, study_uid, 'acc', modulo=10**7):07d}",
                series=series,
            )
        )
    return PatientPlan(
        seed=seed,
        index=patient.index,
        size="small",
        quirk=Quirk.NONE,
        anatomy=anatomy,
        studies=tuple(studies),
        seg=None,
        sex=str(rng.choice(["M", "M", "M", "F"])),
        age=int(rng.integers(45, 85)),
    )


def _series_plan(
    rng: np.random.Generator, anatomy: Any, body_fov: float, pixels: int, ct: idc.IdcSeries, offset: int
) -> SeriesPlan:
    nz = max(1, ct.instance_count)
    dz = 2.5 if nz >= 60 else 5.0
    dxy = body_fov / pixels
    half = (pixels - 1) * dxy / 2.0
    # Centred on the liver, so every series (18 slices or more) crosses it; each series of a
    # study on its own slice lattice (0.5 mm apart), so positions tell the series apart.
    s0 = round(anatomy.liver_centre[2] - (nz - 1) * dz / 2.0, 2) + 0.5 * offset
    geometry = Geometry.from_components(
        shape=(nz, pixels, pixels),
        spacing_zyx=(dz, dxy, dxy),
        origin_lps=(round(-half, 4), round(anatomy.body.centre_lp[1] - half, 4), s0),
    )
    phase = "pre" if _is_pre(ct) else "portal_venous"
    return SeriesPlan(
        series_uid=ct.series_instance_uid,
        series_number=ct.series_number if ct.series_number is not None else 0,
        description=ct.series_description,
        kind="axial",
        acquisitions=((1 if phase == "pre" else 3, phase),),
        geometry=geometry,
        time=f"{9 + offset:02d}{int(rng.integers(0, 60)):02d}00",
        signed=bool(rng.uniform() < 0.2),
    )


@dataclass(frozen=True)
class TwinSegTruth:
    """What a correct build makes of one SEG of the twin."""

    patient_id: str
    seg_series_instance_uid: str
    seg_sop_instance_uid: str
    crdc_series_uuid: str
    ct_series_instance_uid: str
    """The CT series the SEG references (ReferencedSeriesSequence and per-frame sources)."""
    analysis_result_id: str
    """IDC analysis result ('' for the collection's own manual SEG)."""
    series_description: str
    expected_annotation_source: str
    """'manual', 'ai' or 'ai_corrected'."""
    segments: tuple[str, ...]
    voxels: tuple[tuple[str, int], ...]
    """(label name, voxels) on the CT grid."""


@dataclass(frozen=True)
class TwinSeriesTruth:
    """One series of the index as the twin wrote it."""

    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    crdc_series_uuid: str
    modality: str
    series_number: int | None
    series_description: str
    analysis_result_id: str
    instances: int
    """Files written (the index's instanceCount for CT and SEG series)."""


@dataclass(frozen=True)
class TwinPatientTruth:
    patient_id: str
    series: tuple[TwinSeriesTruth, ...]
    segs: tuple[TwinSegTruth, ...]
    files: int
    bytes: int
    seconds: float = field(default=0.0, compare=False)
    """Wall time spent generating it; not stored."""


def generate_twin_patient(patient: TwinPatient, seed: int, pixels: int, target: Target) -> TwinPatientTruth:
    """Write one patient of the twin under ``target`` and return its truth."""
    started = time.perf_counter()
    plan = plan_twin_patient(patient, seed, pixels)
    placed = place_segs(patient, seed)
    writer = _Writer(plan, target)
    seg_truth: list[TwinSegTruth] = []
    written: dict[str, int] = {}
    by_uid = {s.series_instance_uid: s for s in patient.rows}
    for k, study in enumerate(plan.studies):
        for i, series in enumerate(study.series):
            row = by_uid[series.series_uid]
            rendered = render_series(plan, k, i)
            for ds in rendered.datasets:
                _as_indexed(ds, row)
                writer.write(f"{row.crdc_series_uuid}/{crdc_uuid(ds.SOPInstanceUID)}.dcm", ds)
            writer.flush()
            written[row.series_instance_uid] = len(rendered.datasets)
            mine = [t for t in placed if t.ct_series_instance_uid == series.series_uid]
            if not mine:
                continue
            sources = _header_only(rendered.datasets, series.acquisitions[0][0])
            for t in mine:
                seg_truth.append(_write_seg(t, sources, rendered.raster.segments, study.date, seed, writer))
                written[t.series.series_instance_uid] = 1
            writer.flush()
    series_truth = tuple(
        TwinSeriesTruth(
            patient_id=s.patient_id,
            study_instance_uid=s.study_instance_uid,
            series_instance_uid=s.series_instance_uid,
            crdc_series_uuid=s.crdc_series_uuid,
            modality=s.modality,
            series_number=s.series_number,
            series_description=s.series_description,
            analysis_result_id=s.analysis_result_id,
            instances=written.get(s.series_instance_uid, 0),
        )
        for s in patient.rows
    )
    return TwinPatientTruth(
        patient_id=patient.patient_id,
        series=series_truth,
        segs=tuple(sorted(seg_truth, key=lambda t: t.seg_series_instance_uid)),
        files=writer.files,
        bytes=writer.bytes,
        seconds=time.perf_counter() - started,
    )


def _as_indexed(ds: Dataset, row: idc.IdcSeries) -> None:
    # The index's identifiers, not the phantom's; a series without description has none.
    ds.PatientID = row.patient_id
    ds.PatientName = row.patient_id
    if not row.series_description and "SeriesDescription" in ds:
        del ds.SeriesDescription
    if row.series_number is None and "SeriesNumber" in ds:
        del ds.SeriesNumber


def _write_seg(
    t: TwinSeg, sources: list[Dataset], masks: np.ndarray, date: str, seed: int, writer: _Writer
) -> TwinSegTruth:
    segments = (
        manual_segments() if t.source == SOURCE_MANUAL else aimi_segments(t.source == SOURCE_AI_CORRECTED)
    )
    seg = dcmqi_seg(
        sources,
        masks,
        segments,
        series_uid=t.series.series_instance_uid,
        sop_uid=t.sop_instance_uid,
        series_description=t.series.series_description,
        date=date,
        seed=seed,
    )
    writer.write(f"{t.series.crdc_series_uuid}/{crdc_uuid(t.sop_instance_uid)}.dcm", seg)
    kept = np.zeros_like(masks)
    for s in segments:
        kept[..., s.channel] = masks[..., s.channel]
    return TwinSegTruth(
        patient_id=t.series.patient_id,
        seg_series_instance_uid=t.series.series_instance_uid,
        seg_sop_instance_uid=t.sop_instance_uid,
        crdc_series_uuid=t.series.crdc_series_uuid,
        ct_series_instance_uid=t.ct_series_instance_uid,
        analysis_result_id=t.series.analysis_result_id,
        series_description=t.series.series_description,
        expected_annotation_source=t.source,
        segments=tuple(s.label for s in segments),
        voxels=count_labels(label_map(kept)),
    )


@dataclass(frozen=True)
class TwinTruth:
    """Ground truth of a twin: what was written, and what a correct build makes of each SEG."""

    source: str
    """The ``idc://`` URL the twin was made from."""
    index: dict[str, Any]
    """The index's totals and version (hcc_shards.idc.IdcSelection.record)."""
    seed: int
    pixels: int
    patients: tuple[TwinPatientTruth, ...]
    format_version: int = TWIN_TRUTH_FORMAT_VERSION

    @property
    def series(self) -> tuple[TwinSeriesTruth, ...]:
        return tuple(s for p in self.patients for s in p.series)

    @property
    def segs(self) -> tuple[TwinSegTruth, ...]:
        return tuple(s for p in self.patients for s in p.segs)

    @property
    def files(self) -> int:
        return sum(p.files for p in self.patients)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.patients)

    def totals(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for s in self.segs:
            counts[s.expected_annotation_source] += 1
        return {
            "patients": len(self.patients),
            "studies": len({s.study_instance_uid for s in self.series}),
            "series": len(self.series),
            "instances": sum(s.instances for s in self.series),
            "segs": len(self.segs),
            "segs_by_source": dict(sorted(counts.items())),
            "files": self.files,
            "bytes": self.bytes,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "kind": "idc_twin",
            "source": self.source,
            "index": self.index,
            "seed": self.seed,
            "pixels": self.pixels,
            "totals": self.totals(),
            "patients": [
                {
                    "patient_id": p.patient_id,
                    "files": p.files,
                    "bytes": p.bytes,
                    "series": [asdict(s) for s in p.series],
                    "segs": [{**asdict(s), "voxels": dict(s.voxels)} for s in p.segs],
                }
                for p in self.patients
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TwinTruth:
        if data.get("format_version") != TWIN_TRUTH_FORMAT_VERSION or data.get("kind") != "idc_twin":
            raise ValueError(
                f"expected an idc_twin truth of format_version {TWIN_TRUTH_FORMAT_VERSION}, "
                f"got kind {data.get('kind')!r} version {data.get('format_version')!r}"
            )
        patients = tuple(
            TwinPatientTruth(
                patient_id=p["patient_id"],
                series=tuple(TwinSeriesTruth(**s) for s in p["series"]),
                segs=tuple(
                    TwinSegTruth(
                        **{
                            **s,
                            "segments": tuple(s["segments"]),
                            "voxels": tuple((k, int(v)) for k, v in s["voxels"].items()),
                        }
                    )
                    for s in p["segs"]
                ),
                files=int(p["files"]),
                bytes=int(p["bytes"]),
            )
            for p in data["patients"]
        )
        return cls(
            source=data["source"],
            index=data["index"],
            seed=int(data["seed"]),
            pixels=int(data["pixels"]),
            patients=patients,
        )


def write_twin_truth(truth: TwinTruth, url: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, path = filesystem(url, storage_options)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, (json.dumps(truth.to_dict(), indent=1) + "\n").encode())


def load_twin_truth(url: str, storage_options: dict[str, Any] | None = None) -> TwinTruth:
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "rb") as f:
        return TwinTruth.from_dict(json.loads(f.read()))


def _generate_one(args: tuple[TwinPatient, int, int, Target]) -> TwinPatientTruth:
    return generate_twin_patient(*args)


def generate_twin(
    out_url: str,
    source: str = "idc://hcc_tace_seg",
    *,
    pixels: int = DEFAULT_PIXELS,
    seed: int = 0,
    workers: int = 1,
    storage_options: dict[str, Any] | None = None,
    truth_url: str | None = None,
    index_path: str | Path | None = None,
) -> TwinTruth:
    """Write the twin of ``source`` (an ``idc://`` URL, filters allowed, or a collection id).

    ``index_path`` reads another copy of the index (parquet, or a CSV with IDC's columns) instead
    of the one in idc-index-data.
    """
    if not idc.is_idc_url(source):
        source = f"{idc.PREFIX}{source}"
    if pixels < 8:
        raise ValueError(f"pixels must be >= 8, got {pixels}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    selection = idc.resolve(source, index_path)
    target = Target(url=out_url, layout="idc", storage_options=tuple(sorted((storage_options or {}).items())))
    jobs = [(p, seed, pixels, target) for p in twin_patients(selection)]
    if workers == 1 or len(jobs) == 1 or protocol_of(out_url) == "memory":
        results = [_generate_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")
        ) as pool:
            results = list(pool.map(_generate_one, jobs))
    truth = TwinTruth(
        source=source, index=selection.record(), seed=seed, pixels=pixels, patients=tuple(results)
    )
    if truth_url is not None:
        write_twin_truth(truth, truth_url, storage_options)
    return truth

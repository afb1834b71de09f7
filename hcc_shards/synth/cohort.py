"""Generate a synthetic HCC-TACE-Seg look-alike cohort: plan, render, write, and record the truth.

Order of operations for one patient (``generate_patient``, a pure function of seed, index and
edition): plan every study and series, then per series rasterise the phantom, render each
acquisition and write its slices, and (IDC edition) write the AIMI SEGs planned on it; then build
and write the manual SEG over the annotated acquisition; last, count the truth labels on the
annotated CT grid. Patients are independent, so ``workers`` > 1 generates them in separate
processes; the files are the same whatever the number of workers.

Editions (hcc_shards.synth.plan.EDITIONS): 'tcia' (the default) writes the collection as TCIA
serves it; 'idc' as IDC serves it (hcc_shards.synth.edition): AIMI-like SEGs besides the manual
one, every SEG as dcmqi writes it, 1 to 3 CT series per study.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import fsspec
import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from hcc_shards.annotation import SOURCE_AI, SOURCE_AI_CORRECTED, SOURCE_MANUAL
from hcc_shards.labels import LABELS
from hcc_shards.qc_rules import qc_flags
from hcc_shards.quarantine import Reason
from hcc_shards.storage import filesystem, join, protocol_of
from hcc_shards.synth.ct import min_feature_mm, render_series
from hcc_shards.synth.dcmqi import (
    AIMI_CORRECTED_DESCRIPTION,
    AIMI_DESCRIPTION,
    aimi_segments,
    as_dcmqi_writes,
    dcmqi_seg,
)
from hcc_shards.synth.edition import plan_idc_patient
from hcc_shards.synth.layout import LAYOUTS, ct_path, seg_file_path, seg_path
from hcc_shards.synth.phantom import label_map, rasterize
from hcc_shards.synth.plan import EDITIONS, SIZES, AimiSegPlan, PatientPlan, Quirk, StudyPlan, plan_patient
from hcc_shards.synth.seg import SEG_SERIES_DESCRIPTION, SEG_SERIES_NUMBER, build_seg
from hcc_shards.synth.truth import (
    CohortTruth,
    PatientTruth,
    SegTruth,
    SeriesTruth,
    count_labels,
    nearest_label_map,
    write_truth,
)

EXPECTED_REASON: dict[Quirk, Reason | None] = {quirk: None for quirk in Quirk}
"""Quarantine reason a correct build records per quirk. Every current quirk is survivable (a
patient without SEG yields neither a case nor a quarantine row); injected faults will add reasons."""


@dataclass(frozen=True)
class Target:
    """Where and how to write."""

    url: str
    """Root of the DICOM tree (any fsspec URL)."""
    layout: str
    """'tcia' or 'idc'."""
    storage_options: tuple[tuple[str, Any], ...] = ()
    """fsspec storage options, as sorted pairs so the target stays hashable and picklable."""

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        return filesystem(self.url, dict(self.storage_options))


def encode_dataset(ds: Dataset) -> bytes:
    """The Part 10 file bytes of ``ds`` (preamble, file meta, dataset)."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


class _Writer:
    """The single place files leave the generator; it counts what it writes.

    Files are buffered and sent in batches (``fs.pipe`` with many paths), which object stores
    upload concurrently; a batch is flushed at ``flush_bytes`` and at the end of every series.
    """

    def __init__(self, plan: PatientPlan, target: Target, flush_bytes: int = 64 * 1024 * 1024) -> None:
        self.plan = plan
        self.layout = target.layout
        self.fs, self.root = target.filesystem()
        self.local = protocol_of(target.url) == "file"
        self.flush_bytes = flush_bytes
        self.files = 0
        self.bytes = 0
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0
        self._dirs: set[str] = set()

    def write(self, relpath: str, ds: Dataset) -> None:
        data = encode_dataset(ds)
        path = join(self.root, relpath)
        if self.local:
            # Object stores have no folders; local disks need them before the write.
            parent = path.rsplit("/", 1)[0]
            if parent not in self._dirs:
                self.fs.makedirs(parent, exist_ok=True)
                self._dirs.add(parent)
        self._pending[path] = data
        self._pending_bytes += len(data)
        self.files += 1
        self.bytes += len(data)
        if self._pending_bytes >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.fs.pipe(self._pending)
        self._pending = {}
        self._pending_bytes = 0


def generate_patient(seed: int, index: int, size: str, target: Target, edition: str = "tcia") -> PatientTruth:
    """Write patient ``index`` (1-based) of cohort ``seed`` under ``target`` and return its truth."""
    if target.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {target.layout!r}")
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")
    started = time.perf_counter()
    plan = plan_idc_patient(seed, index, size) if edition == "idc" else plan_patient(seed, index, size)
    writer = _Writer(plan, target)
    series_truth: list[SeriesTruth] = []
    aimi_truth: list[SegTruth] = []
    sources: list[Dataset] = []
    ct_masks: np.ndarray | None = None
    for k, study in enumerate(plan.studies):
        for i, series in enumerate(study.series):
            rendered = render_series(plan, k, i)
            for ds in rendered.datasets:
                if plan.edition == "idc" and not series.description:
                    del ds.SeriesDescription  # as in the IDC index: no SeriesDescription at all
                writer.write(
                    ct_path(target.layout, plan, study, series, ds.InstanceNumber, ds.SOPInstanceUID), ds
                )
            writer.flush()
            series_truth.append(
                SeriesTruth(
                    series_instance_uid=series.series_uid,
                    series_number=series.series_number,
                    description=series.description,
                    kind=series.kind,
                    acquisition_numbers=tuple(a for a, _ in series.acquisitions),
                    instances=len(rendered.datasets),
                    geometry=series.geometry,
                )
            )
            manual = (
                plan.seg if plan.seg and (k, i) == (plan.seg.study_index, plan.seg.series_index) else None
            )
            aimi_here = [a for a in plan.aimi if (a.study_index, a.series_index) == (k, i)]
            wanted = {a.acquisition_number for a in aimi_here} | (
                {manual.acquisition_number} if manual else set()
            )
            # Headers only (pixel data dropped), once per acquisition, shared by the SEGs on it.
            headers = {acq: _header_only(rendered.datasets, acq) for acq in sorted(wanted)}
            if manual is not None:
                sources = headers[manual.acquisition_number]
                ct_masks = rendered.raster.segments
            for aimi in aimi_here:
                aimi_truth.append(
                    _write_aimi(
                        plan,
                        aimi,
                        headers[aimi.acquisition_number],
                        rendered.raster.segments,
                        writer,
                        target.layout,
                    )
                )
            writer.flush()

    if plan.seg is None or ct_masks is None:
        writer.flush()
        return _truth(plan, series_truth, None, aimi_truth, writer, started)
    ct_series = plan.annotated_series
    if ct_series is None:
        raise RuntimeError(f"{plan.patient_id}: a SEG is planned but no annotated series was found")
    if plan.seg.grid is None:
        masks = ct_masks
        labels = label_map(ct_masks)
    else:
        feature = min_feature_mm(plan, ct_series.geometry)
        masks = rasterize(plan.anatomy, plan.seg.grid, min_feature_mm=feature).segments
        labels = nearest_label_map(label_map(masks), plan.seg.grid, ct_series.geometry)
    study = plan.studies[plan.seg.study_index]
    seg = build_seg(plan, sources, masks, plan.seg.grid)
    if plan.edition == "idc":
        seg = as_dcmqi_writes(seg)
    writer.write(seg_path(target.layout, plan, study, SEG_SERIES_NUMBER, SEG_SERIES_DESCRIPTION), seg)
    writer.flush()
    return _truth(plan, series_truth, labels, aimi_truth, writer, started)


def _write_aimi(
    plan: PatientPlan,
    aimi: AimiSegPlan,
    sources: list[Dataset],
    ct_masks: np.ndarray,
    writer: _Writer,
    layout: str,
) -> SegTruth:
    """Write one AIMI-like SEG over ``sources`` and return its truth."""
    study: StudyPlan = plan.studies[aimi.study_index]
    series = study.series[aimi.series_index]
    # A prediction is the phantom's masks moved in-plane (never across slices: no frame appears or vanishes).
    masks = ct_masks if aimi.shift_yx == (0, 0) else np.roll(ct_masks, aimi.shift_yx, axis=(1, 2))
    segments = aimi_segments(aimi.corrected)
    description = AIMI_CORRECTED_DESCRIPTION if aimi.corrected else AIMI_DESCRIPTION
    seg = dcmqi_seg(
        sources,
        masks,
        segments,
        series_uid=aimi.series_uid,
        sop_uid=aimi.sop_uid,
        series_description=description,
        date=study.date,
        seed=plan.seed,
    )
    writer.write(
        seg_file_path(layout, plan, study, SEG_SERIES_NUMBER, description, aimi.series_uid, aimi.sop_uid), seg
    )
    kept = np.zeros_like(masks)
    for s in segments:
        kept[..., s.channel] = masks[..., s.channel]
    annotated = tuple(LABELS[s.channel].name for s in sorted(segments, key=lambda s: s.channel))
    counts = dict(count_labels(label_map(kept)))
    return SegTruth(
        seg_series_instance_uid=aimi.series_uid,
        seg_sop_instance_uid=aimi.sop_uid,
        series_description=description,
        ct_series_instance_uid=series.series_uid,
        ct_acquisition_number=aimi.acquisition_number,
        expected_annotation_source=SOURCE_AI_CORRECTED if aimi.corrected else SOURCE_AI,
        annotated_labels=annotated,
        voxels=tuple((name, counts[name]) for name in annotated),
        expected_case=True,
        expected_pairing="referenced_series",
    )


def _header_only(datasets: tuple[Dataset, ...], acquisition: int) -> list[Dataset]:
    # The SEG needs the annotated slices' headers in array order (ascending along the stack).
    chosen = [ds for ds in datasets if int(ds.AcquisitionNumber) == acquisition]
    for ds in chosen:
        del ds.PixelData
    return sorted(chosen, key=lambda ds: float(ds.ImagePositionPatient[2]))


def _truth(
    plan: PatientPlan,
    series: list[SeriesTruth],
    labels: np.ndarray | None,
    aimi: list[SegTruth],
    writer: _Writer,
    started: float,
) -> PatientTruth:
    seg = plan.seg
    ct_series = plan.annotated_series
    voxels = count_labels(labels) if labels is not None else ()
    if seg is None or ct_series is None:
        pairing = None
    else:
        pairing = "referenced_series" if seg.with_references else "frame_of_reference_geometry"
    reason = EXPECTED_REASON[plan.quirk]
    segs: list[SegTruth] = []
    if plan.edition == "idc" and seg is not None and ct_series is not None and pairing is not None:
        segs.append(
            SegTruth(
                seg_series_instance_uid=seg.series_uid,
                seg_sop_instance_uid=seg.sop_uid,
                series_description=SEG_SERIES_DESCRIPTION,
                ct_series_instance_uid=ct_series.series_uid,
                ct_acquisition_number=seg.acquisition_number,
                expected_annotation_source=SOURCE_MANUAL,
                annotated_labels=tuple(lab.name for lab in LABELS),
                voxels=voxels,
                expected_case=reason is None,
                expected_pairing=pairing,
            )
        )
    segs.extend(aimi)
    return PatientTruth(
        patient_id=plan.patient_id,
        quirk=str(plan.quirk),
        study_instance_uids=tuple(s.study_uid for s in plan.studies),
        series=tuple(series),
        seg_sop_instance_uid=None if seg is None else seg.sop_uid,
        seg_series_instance_uid=None if seg is None else seg.series_uid,
        ct_study_instance_uid=None if seg is None else plan.studies[seg.study_index].study_uid,
        ct_series_instance_uid=None if ct_series is None else ct_series.series_uid,
        ct_acquisition_number=None if seg is None else seg.acquisition_number,
        ct_geometry=None if ct_series is None else ct_series.geometry,
        voxels=voxels,
        expected_case=seg is not None and reason is None,
        expected_reason=None if reason is None else str(reason),
        expected_pairing=pairing,
        expected_qc_flags=qc_flags(dict(voxels)),
        files=writer.files,
        bytes=writer.bytes,
        segs=tuple(segs),
        seconds=time.perf_counter() - started,
    )


def _generate_one(args: tuple[int, int, str, Target, str]) -> PatientTruth:
    return generate_patient(*args)


def generate_cohort(
    out_url: str,
    *,
    patients: int,
    size: str = "small",
    layout: str = "tcia",
    seed: int = 0,
    workers: int = 1,
    storage_options: dict[str, Any] | None = None,
    truth_url: str | None = None,
    edition: str = "tcia",
) -> CohortTruth:
    """Write patients HCC_001..HCC_<patients> under ``out_url``; return (and optionally write) the truth.

    ``edition`` 'tcia' writes one manual SEG per patient; 'idc' adds the AIMI-like SEGs
    (hcc_shards.synth.edition). ``workers`` > 1 uses that many processes; an in-memory filesystem
    (memory://) lives in one process only, so it is always generated in this process.
    """
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, got {edition!r}")
    target = Target(
        url=out_url, layout=layout, storage_options=tuple(sorted((storage_options or {}).items()))
    )
    jobs = [(seed, index, size, target, edition) for index in range(1, patients + 1)]
    if workers == 1 or patients == 1 or protocol_of(out_url) == "memory":
        results = [_generate_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, patients), mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_generate_one, jobs))
    truth = CohortTruth(seed=seed, size=size, layout=layout, patients=tuple(results), edition=edition)
    if truth_url is not None:
        write_truth(truth, truth_url, storage_options)
    return truth

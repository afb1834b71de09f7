"""Generate a synthetic HCC-TACE-Seg look-alike cohort: plan, render, write, and record the truth.

Order of operations for one patient (``generate_patient``, a pure function of seed and index):
plan every study and series, then per series rasterise the phantom, render each acquisition and
write its slices; then build and write the SEG over the annotated acquisition; last, count the
truth labels on the annotated CT grid. Patients are independent, so ``workers`` > 1 generates
them in separate processes; the files are the same whatever the number of workers.
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

from hcc_shards.qc_rules import qc_flags
from hcc_shards.quarantine import Reason
from hcc_shards.storage import filesystem, join, protocol_of
from hcc_shards.synth.ct import min_feature_mm, render_series
from hcc_shards.synth.layout import LAYOUTS, ct_path, seg_path
from hcc_shards.synth.phantom import label_map, rasterize
from hcc_shards.synth.plan import SIZES, PatientPlan, Quirk, plan_patient
from hcc_shards.synth.seg import SEG_SERIES_DESCRIPTION, SEG_SERIES_NUMBER, build_seg
from hcc_shards.synth.truth import (
    CohortTruth,
    PatientTruth,
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


def generate_patient(seed: int, index: int, size: str, target: Target) -> PatientTruth:
    """Write patient ``index`` (1-based) of cohort ``seed`` under ``target`` and return its truth."""
    if target.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {target.layout!r}")
    started = time.perf_counter()
    plan = plan_patient(seed, index, size)
    writer = _Writer(plan, target)
    series_truth: list[SeriesTruth] = []
    sources: list[Dataset] = []
    ct_masks: np.ndarray | None = None
    for k, study in enumerate(plan.studies):
        for i, series in enumerate(study.series):
            rendered = render_series(plan, k, i)
            for ds in rendered.datasets:
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
            if plan.seg is not None and (k, i) == (plan.seg.study_index, plan.seg.series_index):
                sources = _header_only(rendered.datasets, plan.seg.acquisition_number)
                ct_masks = rendered.raster.segments

    if plan.seg is None or ct_masks is None:
        writer.flush()
        return _truth(plan, series_truth, None, writer, started)
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
    writer.write(seg_path(target.layout, plan, study, SEG_SERIES_NUMBER, SEG_SERIES_DESCRIPTION), seg)
    writer.flush()
    return _truth(plan, series_truth, labels, writer, started)


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
        seconds=time.perf_counter() - started,
    )


def _generate_one(args: tuple[int, int, str, Target]) -> PatientTruth:
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
) -> CohortTruth:
    """Write patients HCC_001..HCC_<patients> under ``out_url``; return (and optionally write) the truth.

    ``workers`` > 1 uses that many processes; an in-memory filesystem (memory://) lives in one
    process only, so it is always generated in this process.
    """
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    target = Target(
        url=out_url, layout=layout, storage_options=tuple(sorted((storage_options or {}).items()))
    )
    jobs = [(seed, index, size, target) for index in range(1, patients + 1)]
    if workers == 1 or patients == 1 or protocol_of(out_url) == "memory":
        results = [_generate_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, patients), mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_generate_one, jobs))
    truth = CohortTruth(seed=seed, size=size, layout=layout, patients=tuple(results))
    if truth_url is not None:
        write_truth(truth, truth_url, storage_options)
    return truth

"""Building cases: the annotations of one CT image decoded, resampled and written together, or
found complete (resume). Never raises: every failure is an outcome with a reason code."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from hcc_shards import storage
from hcc_shards.build import progress
from hcc_shards.build.failures import pseudonymizer, reason_of, short_traceback, with_retries
from hcc_shards.build.outcomes import CaseBuilt, Quarantined
from hcc_shards.build.pair import CaseKey, case_key, case_sort_key, image_group_key, with_key
from hcc_shards.build.plan import BuildPlan
from hcc_shards.build.target import BuildTarget
from hcc_shards.case import Case
from hcc_shards.channels import phase_channels
from hcc_shards.dicom.decode import decode_image_group, provenance_of, record_for
from hcc_shards.dicom.pairing import Pairing
from hcc_shards.errors import QuarantineError
from hcc_shards.features import FeatureRow, case_features, features_table, rows_of_table
from hcc_shards.format import IMAGE_FILL, features_path, image_path, qc_path
from hcc_shards.quarantine import QuarantineRecord, Reason
from hcc_shards.resample import check_target_size, resample_cases
from hcc_shards.shards import ManifestRow, split_for_patient
from hcc_shards.shards.atomic import put_bytes_atomic
from hcc_shards.shards.intensity import foreground_histogram
from hcc_shards.shards.writer import read_complete_image, stored_histogram, write_image
from hcc_shards.text import shown

_LOG = logging.getLogger("hcc_shards.build")


def build_case(pairing: Pairing, target: BuildTarget, plan: BuildPlan) -> CaseBuilt | Quarantined:
    """One pairing as the only annotation of its image (:func:`build_image`); never raises."""
    return build_image([pairing], target, plan)[0]


def build_image(
    pairings: Iterable[Pairing], target: BuildTarget, plan: BuildPlan
) -> list[CaseBuilt | Quarantined]:
    """Decode, resample and write the annotations of one image (skipped when already complete).

    The CT is decoded and resampled once, each SEG's labels once. Never raises: one outcome per
    pairing, a case or a quarantine record. A SEG that fails alone is a record and the others are
    written; a CT that fails fails every annotation of the image.
    """
    pairings = sorted(pairings, key=case_sort_key)
    keys = {p.seg.sop_instance_uid: case_key(p) for p in pairings}
    image_id = image_group_key(pairings[0])
    start = time.monotonic()
    stage = ["resume"]  # the stage reached, for the record of a failure
    try:
        done = with_retries(
            lambda: read_complete_image(
                target.version_url, image_id, target.config, plan.output_storage_options
            )
        )
        if done is not None:
            _check_identity(done, pairings, keys)
        if done is not None and set(done) == {k.case_id for k in keys.values()}:
            outcomes: list[CaseBuilt | Quarantined] = list(
                _resumed(pairings, keys, done, target, plan, start)
            )
        else:
            outcomes = _written(pairings, keys, image_id, target, plan, start, stage)
    except QuarantineError as exc:
        outcomes = [
            Quarantined(with_key(record_for(p, exc, stage[0]), keys[p.seg.sop_instance_uid]))
            for p in pairings
        ]
    except Exception as exc:
        _LOG.warning("image %s failed at %s: %s: %s", image_id, stage[0], type(exc).__name__, shown(exc))
        err = QuarantineError(reason_of(exc).value, f"{stage[0]} failed: {type(exc).__name__}: {exc}")
        outcomes = [
            Quarantined(
                with_key(
                    replace(record_for(p, err, stage[0]), details=(("traceback", short_traceback(exc)),)),
                    keys[p.seg.sop_instance_uid],
                )
            )
            for p in pairings
        ]
    pseudo = pseudonymizer(plan.config.pseudonymize_key)
    if pseudo is not None:
        urls = [*(p.seg.url for p in pairings), *(h.url for h in pairings[0].ct_headers)]
        outcomes = [
            Quarantined(pseudo.scrub_urls(o.record, urls)) if isinstance(o, Quarantined) else o
            for o in outcomes
        ]
    for k in keys.values():
        progress.mark_done(plan.progress_dir, k.case_id)
    return outcomes


def _check_identity(done: dict[str, ManifestRow], pairings: list[Pairing], keys: dict[str, CaseKey]) -> None:
    """A complete case found on disk under one of these case ids must be the one this input writes."""
    for pairing in pairings:
        k = keys[pairing.seg.sop_instance_uid]
        row = done.get(k.case_id)
        if row is not None and not _same_identity(row, k, pairing):
            raise QuarantineError(
                Reason.CASE_ID_COLLISION.value,
                f"case {k.case_id} already holds SEG {row.seg_sop_instance_uid} of patient "
                f"{shown(row.patient_id)!r} on CT series {row.ct_series_instance_uid}; this input is "
                "another one and is not merged into it",
            )


def _resumed(
    pairings: list[Pairing],
    keys: dict[str, CaseKey],
    done: dict[str, ManifestRow],
    target: BuildTarget,
    plan: BuildPlan,
    start: float,
) -> list[CaseBuilt]:
    """The outcomes of an image found complete: its rows, features and histograms as stored."""
    seconds = (time.monotonic() - start) / len(pairings)
    out = []
    for p in pairings:
        row = done[keys[p.seg.sop_instance_uid].case_id]
        features = read_case_features(target.version_url, row.case_id, plan) if target.config.features else ()
        histogram = with_retries(
            lambda r=row: stored_histogram(target.version_url, r, plan.output_storage_options)
        )
        out.append(CaseBuilt(row, resumed=True, seconds=seconds, features=features, hu_histogram=histogram))
    return out


def _written(
    pairings: list[Pairing],
    keys: dict[str, CaseKey],
    image_id: str,
    target: BuildTarget,
    plan: BuildPlan,
    start: float,
    stage: list[str],
) -> list[CaseBuilt | Quarantined]:
    """Decode, resample, (features,) write one image; ``stage[0]`` follows the stage reached."""
    config = target.config
    stage[0] = "resample"
    check_target_size(pairings[0].geometry, config.target_spacing, config)
    stage[0] = "decode"
    results = with_retries(lambda: decode_image_group(pairings, config, plan.input_storage_options))
    cases = [r for r in results if isinstance(r, Case)]
    stage[0] = "resample"
    cases = resample_cases(cases, config.target_spacing, config)
    phases = None
    if cases and config.phases != "none":
        stage[0] = "phases"
        own, channels, notes = with_retries(
            lambda: phase_channels(pairings[0], cases, config, plan.input_storage_options)
        )
        phases = (own, channels)
        if notes:
            cases = [replace(c, warnings=(*c.warnings, *notes)) for c in cases]
    feats: dict[str, tuple[FeatureRow, ...]] = {}
    if config.features:
        stage[0] = "features"
        for case in cases:
            feats[case.case_id] = channel_features(case, phases)
            with_retries(
                lambda c=case: write_case_features(target.version_url, c.case_id, feats[c.case_id], plan)
            )
    stage[0] = "write"
    rows: list[ManifestRow] = []
    if cases:
        split = split_for_patient(cases[0].provenance.patient_id, config.seed, config.split_fractions)
        rows = with_retries(
            lambda: write_image(
                cases, target.version_url, config, plan.output_storage_options, split=split, phases=phases
            )
        )
    for case in cases:
        if case.annotation.source == "unknown":
            _LOG.warning(
                "case %s: annotation source unknown (%s); kept as 'unknown', never as manual",
                case.case_id,
                shown(case.annotation.source_reason),
            )
    seconds = (time.monotonic() - start) / len(pairings)
    hists = {c.case_id: foreground_histogram(c.image, c.label) for c in cases}
    by_case = {r.case_id: r for r in rows}
    out: list[CaseBuilt | Quarantined] = []
    for pairing, result in zip(pairings, results, strict=True):
        key = keys[pairing.seg.sop_instance_uid]
        if isinstance(result, QuarantineRecord):
            out.append(Quarantined(with_key(result, key)))
            continue
        out.append(
            CaseBuilt(
                by_case[key.case_id],
                seconds=seconds,
                features=feats.get(key.case_id, ()),
                hu_histogram=hists.get(key.case_id, ()),
            )
        )
    if rows:  # the image's bytes once, on its first written annotation
        first = next(i for i, o in enumerate(out) if isinstance(o, CaseBuilt))
        out[first] = replace(
            out[first],
            bytes_read=image_bytes(pairings),
            bytes_written=_written_bytes(
                target.version_url, image_id, [r.case_id for r in rows], plan.output_storage_options
            ),
        )
    return out


def image_bytes(pairings: list[Pairing]) -> int:
    """Bytes an image reads in full: its CT instances once, and every SEG."""
    return int(sum(h.file_size for h in pairings[0].ct_headers) + sum(p.seg.file_size for p in pairings))


def _same_identity(row: ManifestRow, key: CaseKey, pairing: Pairing) -> bool:
    """Whether a complete case found on disk is the one ``pairing`` would write."""
    return (
        row.seg_sop_instance_uid,
        row.ct_series_instance_uid,
        row.ct_acquisition_number,
        row.patient_id,
    ) == (
        key.seg_sop_instance_uid,
        key.ct_series_instance_uid,
        key.ct_acquisition_number,
        provenance_of(pairing).patient_id,
    )


def features_url(vurl: str, case_id: str) -> str:
    """Per-case features, written before the case's marker so a resumed case keeps them."""
    return storage.join(vurl, features_path(case_id))


def channel_features(
    case: Case, phases: tuple[dict[str, Any], Sequence[Any]] | None
) -> tuple[FeatureRow, ...]:
    """Features of ``case``'s labels on the annotated image and, with phases, on every phase channel.

    A phase channel that does not cover the whole field holds the fill value outside its field;
    those voxels are left out of its masks, so no feature sees padding."""
    images = [(0, phases[0]["phase"] if phases else "", case.image)]
    if phases:
        images += [(n, ch.attrs["phase"], ch.image) for n, ch in enumerate(phases[1], start=1)]
    rows: list[FeatureRow] = []
    for channel, phase, image in images:
        label = (
            case.label
            if channel == 0
            else np.where(image == IMAGE_FILL, 0, case.label).astype(case.label.dtype)
        )
        rows += case_features(
            case.case_id,
            case.provenance.patient_id,
            image,
            label,
            case.geometry.spacing,
            channel=channel,
            phase=phase,
        )
    return tuple(rows)


def write_case_features(vurl: str, case_id: str, rows: tuple[FeatureRow, ...], plan: BuildPlan) -> None:
    buf = io.BytesIO()
    pq.write_table(features_table(rows), buf, compression="zstd")
    put_bytes_atomic(features_url(vurl, case_id), buf.getvalue(), plan.output_storage_options)


def read_case_features(vurl: str, case_id: str, plan: BuildPlan) -> tuple[FeatureRow, ...]:
    fs, path = storage.filesystem(features_url(vurl, case_id), plan.output_storage_options)
    with fs.open(path, "rb") as f:
        return rows_of_table(pq.read_table(f))


def pairing_bytes(pairing: Pairing) -> int:
    """Bytes a case reads in full: its CT instances and its SEG."""
    return int(sum(h.file_size for h in pairing.ct_headers) + pairing.seg.file_size)


def _written_bytes(vurl: str, image_id: str, case_ids: list[str], storage_options: dict[str, Any]) -> int:
    fs, path = storage.filesystem(storage.join(vurl, image_path(image_id)), storage_options)
    total = sum(int(info.get("size") or 0) for info in fs.find(path, detail=True).values())
    for case_id in case_ids:
        fs_qc, qc = storage.filesystem(storage.join(vurl, qc_path(case_id)), storage_options)
        with contextlib.suppress(FileNotFoundError):
            total += int(fs_qc.size(qc))
    return total

"""The dry run behind ``hcc-shards plan``: list, index, pair, decode the SEGs, count voxels.

Plan records are the JSON objects of docs/FORMAT.md "Plan records". The plan reads every
header, and every paired SEG in full; it does not read CT pixel data (transfer syntaxes are
checked from the headers), so it costs a small fraction of a build.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from hcc_shards import idc
from hcc_shards.case import make_case_id
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.ct import check_transfer_syntax
from hcc_shards.dicom.decode import (
    annotation_of,
    annotation_warnings,
    decode_labels,
    image_id_of,
    provenance_of,
    qc_flags,
    record_for,
)
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import Pairing, pair_patient
from hcc_shards.errors import QuarantineError
from hcc_shards.labels import LABELS
from hcc_shards.preflight import drop_datasets
from hcc_shards.quarantine import QuarantineRecord, Reason
from hcc_shards.storage import filesystem, unstrip
from hcc_shards.text import shown

DEFAULT_WORKERS = 8
"""Concurrent header reads; object stores reward a few requests in flight."""


def list_objects(url: str, storage_options: dict[str, Any] | None = None) -> list[tuple[str, int]]:
    """(URL, size) of every file under ``url`` (or of ``url`` itself when it is a file), sorted."""
    fs, path = filesystem(url, storage_options)
    found = {path: fs.info(path)} if fs.isfile(path) else fs.find(path, detail=True)
    out = []
    for p in drop_datasets(sorted(found)):
        info = found[p]
        if info.get("type", "file") != "file":
            continue
        out.append((unstrip(fs, p) if "://" in url else p, int(info.get("size") or 0)))
    return out


def list_files(url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Every file under ``url`` (or ``url`` itself when it is a file), sorted, as full URLs."""
    return [u for u, _ in list_objects(url, storage_options)]


def index_all(
    objects: list[tuple[str, int]], config: BuildConfig, storage_options: dict[str, Any] | None, workers: int
) -> list[InstanceHeader | QuarantineRecord]:
    """:func:`index_file` over (URL, size) pairs, in input order."""

    def one(obj: tuple[str, int]) -> InstanceHeader | QuarantineRecord:
        try:
            return index_file(obj[0], storage_options, config, size=obj[1])
        except Exception as exc:  # index_file records bad input itself; anything else is a bug
            return QuarantineRecord(
                code=Reason.INTERNAL_ERROR.value,
                message=f"indexing failed: {type(exc).__name__}: {exc}",
                stage="index",
                url=obj[0],
            )

    if workers <= 1 or len(objects) <= 1:
        return [one(o) for o in objects]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, objects))


def case_record(
    pairing: Pairing, label: np.ndarray, warnings: tuple[str, ...], config: BuildConfig | None = None
) -> dict[str, Any]:
    """The plan record of a paired, decoded SEG."""
    prov = provenance_of(pairing)
    counts = np.bincount(label.ravel(), minlength=256)
    annotation = annotation_of(pairing, config or BuildConfig())
    return {
        "kind": "case",
        "case_id": make_case_id(
            prov.patient_id,
            prov.seg_sop_instance_uid,
            prov.ct_series_instance_uid,
            prov.ct_acquisition_number,
        ),
        "patient_id": prov.patient_id,
        "seg_sop_instance_uid": prov.seg_sop_instance_uid,
        "seg_series_instance_uid": prov.seg_series_instance_uid,
        "ct_series_instance_uid": prov.ct_series_instance_uid,
        "ct_acquisition_number": prov.ct_acquisition_number,
        "pairing_method": prov.pairing_method,
        "shape_zyx": list(pairing.geometry.shape),
        "spacing_zyx": [round(v, 6) for v in pairing.geometry.spacing],
        "voxels": {
            lab.name: int(counts[lab.value]) if lab.name in annotation.annotated_labels else None
            for lab in LABELS
        },
        "unknown_segments": list(pairing.unknown_segments),
        "qc_flags": list(qc_flags(label)),
        "warnings": list(pairing.warnings + warnings + annotation_warnings(annotation)),
        "image_id": image_id_of(pairing),
        "annotation_source": annotation.source,
        "annotated_labels": list(annotation.annotated_labels),
    }


def plan_records(
    url: str,
    config: BuildConfig | None = None,
    storage_options: dict[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS,
) -> Iterator[dict[str, Any]]:
    """Yield the case and quarantine records of INPUT ``url``, then one summary record.

    An ``idc://`` URL first yields its ``index`` record (what the IDC index says the plan will
    touch), before any object is listed; its series without objects become ``missing_objects``
    records.
    """
    config = config or BuildConfig()
    quarantined: list[QuarantineRecord] = []
    if idc.is_idc_url(url):
        selection = idc.resolve(url)
        yield selection.record()
        storage_options = idc.storage_options_for(selection.query.protocol, storage_options)
        if not config.analysis_result_ids:  # the annotation-source rule reads them (as the build does)
            config = replace(config, analysis_result_ids=tuple(sorted(selection.analysis_results)))
        objects = []
        for series in selection.series:
            found = _list_or_none(series.prefix(selection.query.protocol), storage_options)
            if found:
                objects.extend(found)
            else:
                quarantined.append(missing_objects(series, series.prefix(selection.query.protocol)))
    else:
        objects = list_objects(url, storage_options)
    indexed = index_all(objects, config, storage_options, workers)
    headers = [h for h in indexed if isinstance(h, InstanceHeader)]
    quarantined.extend(r for r in indexed if isinstance(r, QuarantineRecord))
    by_patient: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in headers:
        by_patient[h.patient_id].append(h)
    cases = 0
    seen: dict[str, str] = {}
    for patient in sorted(by_patient):
        try:
            pairings, records = pair_patient(by_patient[patient], config)
        except Exception as exc:  # one patient's bug never ends the plan
            message = f"pairing failed: {type(exc).__name__}: {exc}"
            quarantined.extend(
                h.quarantine(Reason.INTERNAL_ERROR.value, message, "pair")
                for h in by_patient[patient]
                if h.is_seg
            )
            continue
        quarantined.extend(records)
        for pairing in pairings:
            if annotation_of(pairing, config).source not in config.annotation_sources:
                continue
            try:
                for ct in pairing.ct_headers:
                    check_transfer_syntax(ct.transfer_syntax_uid, ct.url)
                label, warnings = decode_labels(pairing, config, storage_options)
                record = case_record(pairing, label, warnings, config)
            except QuarantineError as exc:
                quarantined.append(record_for(pairing, exc))
                continue
            except Exception as exc:
                err = QuarantineError(
                    Reason.INTERNAL_ERROR.value, f"decode failed: {type(exc).__name__}: {exc}"
                )
                quarantined.append(record_for(pairing, err))
                continue
            if record["case_id"] in seen:
                quarantined.append(
                    pairing.seg.quarantine(
                        Reason.CASE_ID_COLLISION.value,
                        f"case id {record['case_id']} is already taken by the SEG at {seen[record['case_id']]!r}",
                        "pair",
                    )
                )
                continue
            seen[record["case_id"]] = pairing.seg.url
            cases += 1
            yield record
    for rec in sorted(quarantined, key=lambda r: r.sort_key):
        yield {"kind": "quarantine", **rec.to_dict()}
    yield {
        "kind": "summary",
        "files": len(objects),
        "instances": len(headers),
        "series": len({h.series_instance_uid for h in headers}),
        "segs": sum(1 for h in headers if h.is_seg),
        "cases": cases,
        "quarantined": len(quarantined),
        "by_reason": dict(sorted(Counter(r.code for r in quarantined).items())),
    }


def _list_or_none(prefix: str, storage_options: dict[str, Any] | None) -> list[tuple[str, int]] | None:
    try:
        return list_objects(prefix, storage_options)
    except FileNotFoundError:
        return None


def missing_objects(series: idc.IdcSeries, root: str) -> QuarantineRecord:
    """The record of a series the IDC index names at ``root`` when no object is there."""
    return QuarantineRecord(
        code=Reason.MISSING_OBJECTS.value,
        message=f"the IDC index names series {series.series_instance_uid} at {root}/, but no object is "
        "there (expected its instances; is the mirror incomplete or the index newer than the bucket?)",
        stage="list",
        url=root,
        patient_id=series.patient_id,
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
    )


def format_record(rec: dict[str, Any]) -> str:
    """One human-readable line (or block, for the summary) per plan record."""
    kind = rec["kind"]
    if kind == "index":
        return idc.format_index_record(rec)
    if kind == "case":
        vox = " ".join(f"{k}={v}" for k, v in rec["voxels"].items())
        extra = ""
        if rec["warnings"]:
            extra += f"\n    warnings: {shown(', '.join(rec['warnings']))}"
        if rec["unknown_segments"]:
            extra += f"\n    unknown segments: {shown(', '.join(rec['unknown_segments']))}"
        if rec["qc_flags"]:
            extra += f"\n    qc: {', '.join(rec['qc_flags'])}"
        shape = "x".join(str(v) for v in rec["shape_zyx"])
        return (
            f"CASE {shown(rec['patient_id'])}  seg {shown(rec['seg_sop_instance_uid'])}\n"
            f"    ct {shown(rec['ct_series_instance_uid'])} acq {rec['ct_acquisition_number']} "
            f"({rec['pairing_method']}), {shape} voxels\n    {vox}{extra}"
        )
    if kind == "quarantine":
        where = rec["url"] or rec["series_instance_uid"]
        return f"QUARANTINE {rec['code']} [{rec['stage']}] {shown(where)}\n    {shown(rec['message'], limit=None)}"
    reasons = "\n".join(f"    {k}: {v}" for k, v in rec["by_reason"].items())
    return (
        f"SUMMARY files={rec['files']} instances={rec['instances']} series={rec['series']} "
        f"segs={rec['segs']} cases={rec['cases']} quarantined={rec['quarantined']}"
        + (f"\n{reasons}" if reasons else "")
    )

"""The dry run behind ``hcc-shards plan``: the build's own list, index and pair stages, then each
SEG decoded and its voxels counted.

Plan records are the JSON objects of docs/FORMAT.md "Plan records". The plan reads every
header, and every paired SEG in full; it does not read CT pixel data (transfer syntaxes are
checked from the headers), so it costs a small fraction of a build.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from hcc_shards import idc
from hcc_shards.build.local import DEFAULT_WORKERS, list_and_index, pair_all
from hcc_shards.build.pair import case_id_of, case_sort_key
from hcc_shards.build.plan import BuildPlan, with_inputs
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
from hcc_shards.dicom.pairing import Pairing
from hcc_shards.errors import QuarantineError
from hcc_shards.labels import LABELS
from hcc_shards.quarantine import QuarantineRecord, Reason
from hcc_shards.text import shown


def case_record(
    pairing: Pairing, label: np.ndarray, warnings: tuple[str, ...], config: BuildConfig | None = None
) -> dict[str, Any]:
    """The plan record of a paired, decoded SEG."""
    prov = provenance_of(pairing)
    counts = np.bincount(label.ravel(), minlength=256)
    annotation = annotation_of(pairing, config or BuildConfig())
    return {
        "kind": "case",
        "case_id": case_id_of(pairing),
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
    source: str | BuildPlan,
    config: BuildConfig | None = None,
    storage_options: dict[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS,
) -> Iterator[dict[str, Any]]:
    """Yield the case and quarantine records of an INPUT, then one summary record.

    ``source`` is INPUT in the build's grammar (prefixes, comma lists, ``@`` list files,
    ``idc://``), with ``config`` and ``storage_options``; or a dry-run :class:`BuildPlan` made from
    the build's flags. Listing, index (pseudonymized with the build's key), pairing and case ids are
    the build's own stages (:mod:`hcc_shards.build.local`). An ``idc://`` entry first yields its
    ``index`` record (what the IDC index says the plan will touch), before any object is listed; its
    series without objects become ``missing_objects`` records.
    """
    plan = source if isinstance(source, BuildPlan) else dry_run_plan(source, config, storage_options)
    yield from (dict(r) for r in plan.input_index)
    indexed = list_and_index(plan, workers)
    headers = [h for h in indexed if isinstance(h, InstanceHeader)]
    quarantined = [r for r in indexed if isinstance(r, QuarantineRecord)]
    pairings, records = pair_all(headers, plan)
    quarantined.extend(records)
    patients = {h.patient_id for h in headers}
    ct_series = {h.series_instance_uid for h in headers if not h.is_seg}
    cases = 0
    for pairing in sorted(pairings, key=lambda p: (p.seg.patient_id, case_sort_key(p))):
        try:
            for ct in pairing.ct_headers:
                check_transfer_syntax(ct.transfer_syntax_uid, ct.url)
            label, warnings = decode_labels(pairing, plan.config, plan.input_storage_options)
        except QuarantineError as exc:
            quarantined.append(record_for(pairing, exc))
            continue
        except Exception as exc:
            err = QuarantineError(Reason.INTERNAL_ERROR.value, f"decode failed: {type(exc).__name__}: {exc}")
            quarantined.append(record_for(pairing, err))
            continue
        cases += 1
        yield case_record(pairing, label, warnings, plan.config)
    for rec in sorted(quarantined, key=lambda r: r.sort_key):
        yield {"kind": "quarantine", **rec.to_dict()}
    yield {
        "kind": "summary",
        "files": sum(1 for i in indexed if not (isinstance(i, QuarantineRecord) and i.stage == "list")),
        "instances": len(headers),
        "series": len({h.series_instance_uid for h in headers}),
        "segs": sum(1 for h in headers if h.is_seg),
        "patients": len(patients),
        "patients_without_seg": len(patients - {h.patient_id for h in headers if h.is_seg}),
        "ct_series": len(ct_series),
        "ct_series_unused": len(ct_series - {p.ct_series_instance_uid for p in pairings}),
        "cases": cases,
        "quarantined": len(quarantined),
        "by_reason": dict(sorted(Counter(r.code for r in quarantined).items())),
    }


def dry_run_plan(
    input_url: str, config: BuildConfig | None = None, storage_options: dict[str, Any] | None = None
) -> BuildPlan:
    """The plan of a dry run over ``input_url`` with a BuildConfig made in code (``idc://`` entries
    bring their analysis results and storage options, as in the build)."""
    return with_inputs(
        BuildPlan(
            input_url=input_url,
            output_url="",
            config=config or BuildConfig(),
            input_storage_options=dict(storage_options or {}),
            dry_run=True,
        )
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
        f"segs={rec['segs']} cases={rec['cases']} quarantined={rec['quarantined']}\n"
        f"    patients={rec['patients']} ({rec['patients_without_seg']} with CT but no SEG), "
        f"CT series={rec['ct_series']} ({rec['ct_series_unused']} used by no case)"
        + (f"\n{reasons}" if reasons else "")
    )

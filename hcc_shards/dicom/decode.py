"""Pairing -> Case: read the chosen CT slices and the SEG in full, decode both on the CT grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from hcc_shards.annotation import SOURCE_UNKNOWN, annotation_source
from hcc_shards.case import Annotation, Case, Provenance, make_image_id
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.ct import decode_ct, read_dataset
from hcc_shards.dicom.limits import header_read_limit
from hcc_shards.dicom.pairing import Pairing
from hcc_shards.dicom.seg import labels_on_ct_grid
from hcc_shards.errors import QuarantineError
from hcc_shards.labels import LABEL_BY_VALUE, LABELS, LIVER, TUMOR
from hcc_shards.qc_rules import qc_flags as qc_flags_of_counts
from hcc_shards.quarantine import QuarantineRecord, Reason

_DEFAULT_CONFIG = BuildConfig()


def provenance_of(pairing: Pairing) -> Provenance:
    ct = pairing.ct_headers[0]
    return Provenance(
        patient_id=pairing.seg.patient_id or ct.patient_id,
        study_instance_uid=ct.study_instance_uid,
        ct_series_instance_uid=ct.series_instance_uid,
        ct_acquisition_number=pairing.acquisition_number,
        seg_sop_instance_uid=pairing.seg.sop_instance_uid,
        seg_series_instance_uid=pairing.seg.series_instance_uid,
        frame_of_reference_uid=ct.frame_of_reference_uid,
        ct_series_description=ct.series_description,
        seg_series_description=pairing.seg.series_description,
        pairing_method=pairing.method,
    )


def dicom_source_of(pairing: Pairing) -> dict[str, Any]:
    """What a DICOM SEG over the CT grid must reference: the CT SOP class, series, study, frame of
    reference, and per CT-grid slice z its (SOPInstanceUID, frame number; 0 for single-frame)."""
    ct = pairing.ct_headers[0]
    return {
        "sop_class_uid": ct.sop_class_uid,
        "patient_id": ct.patient_id,
        "study_instance_uid": ct.study_instance_uid,
        "series_instance_uid": ct.series_instance_uid,
        "frame_of_reference_uid": ct.frame_of_reference_uid,
        "instances": [[s.sop_instance_uid, int(s.frame)] for s in pairing.slices],
    }


def image_id_of(pairing: Pairing) -> str:
    """Id of the stored image of ``pairing`` (shared by every pairing with its ``image_key``)."""
    series, acq, block = pairing.image_key
    return make_image_id(provenance_of(pairing).patient_id, series, acq, block)


def annotation_of(pairing: Pairing, config: BuildConfig = _DEFAULT_CONFIG) -> Annotation:
    """Source and defined labels of the pairing's SEG, from its header (hcc_shards.annotation)."""
    seg = pairing.seg
    defined = {value for _, value in pairing.segment_labels}
    types = sorted({s.algorithm_type.strip().upper() for s in seg.segments if s.algorithm_type.strip()})
    analysis = _analysis_result_id(seg.series_instance_uid, config)
    decision = annotation_source(types, seg.series_description, seg.content_creator_name, analysis)
    return Annotation(
        source=decision.source,
        source_reason=decision.reason,
        annotated_labels=tuple(lab.name for lab in LABELS if lab.value in defined),
        segment_algorithm_type=",".join(types),
        seg_series_description=seg.series_description,
        seg_manufacturer=seg.manufacturer,
        content_creator=seg.content_creator_name,
        analysis_result_id=analysis,
    )


def annotation_warnings(annotation: Annotation) -> tuple[str, ...]:
    """The warning an annotation of unknown source carries (its source is never guessed)."""
    if annotation.source != SOURCE_UNKNOWN:
        return ()
    return (f"annotation_source_unknown:{annotation.source_reason}",)


def _analysis_result_id(seg_series_instance_uid: str, config: BuildConfig) -> str:
    if not config.analysis_result_ids:
        return ""
    found = config.analysis_result_id(seg_series_instance_uid)
    if found or not config.pseudonymize_key:
        return found
    # Headers carry pseudonymised UIDs by now; the mapping names the real ones.
    from hcc_shards.pseudonymize import Pseudonymizer

    pseudo = Pseudonymizer(config.pseudonymize_key)
    return {pseudo.uid(k): v for k, v in config.analysis_result_ids}.get(seg_series_instance_uid, "")


def decode_labels(
    pairing: Pairing, config: BuildConfig = _DEFAULT_CONFIG, storage_options: dict[str, Any] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(uint8 label map on ``pairing.geometry``, warnings); reads only the SEG."""
    seg_ds = read_dataset(pairing.seg.url, storage_options, header_read_limit(pairing.seg))
    label, seg_warnings = labels_on_ct_grid(
        seg_ds,
        pairing.seg,
        pairing.frame_slices,
        pairing.slices,
        pairing.geometry,
        pairing.ct_headers[0].orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        dict(pairing.segment_labels),
        config,
    )
    if not label.any():
        raise QuarantineError(
            Reason.EMPTY_SEG,
            f"SEG {pairing.seg.sop_instance_uid}: no foreground voxel of a known segment on CT series "
            f"{pairing.ct_series_instance_uid}",
        )
    return label, seg_warnings


def decode_pairing(
    pairing: Pairing, config: BuildConfig = _DEFAULT_CONFIG, storage_options: dict[str, Any] | None = None
) -> Case:
    """The Case of one pairing on its CT grid; raises QuarantineError for expected failures.

    Reads the chosen CT instances and the SEG in full, nothing else.
    """
    image = decode_ct(pairing.ct_headers, pairing.slices, config, storage_options)
    return annotation_case(pairing, image, config, storage_options)


def annotation_case(
    pairing: Pairing,
    image: np.ndarray,
    config: BuildConfig = _DEFAULT_CONFIG,
    storage_options: dict[str, Any] | None = None,
) -> Case:
    """The Case of one pairing on ``image``, its CT decoded already (shared by the image's SEGs)."""
    label, seg_warnings = decode_labels(pairing, config, storage_options)
    annotation = annotation_of(pairing, config)
    return Case(
        image=image,
        label=label,
        geometry=pairing.geometry,
        provenance=provenance_of(pairing),
        warnings=pairing.warnings + seg_warnings + annotation_warnings(annotation),
        unknown_segments=pairing.unknown_segments,
        qc_flags=qc_flags(label),
        dicom_source=dicom_source_of(pairing),
        annotation=annotation,
        image_id=image_id_of(pairing),
    )


def decode_image_group(
    pairings: list[Pairing],
    config: BuildConfig = _DEFAULT_CONFIG,
    storage_options: dict[str, Any] | None = None,
) -> list[Case | QuarantineRecord]:
    """The annotations of one image: its CT decoded once, then each SEG; a failing SEG is a record.

    Every pairing must have the same ``image_key``. A CT that fails to decode raises
    QuarantineError (it fails every annotation of the image).
    """
    keys = {p.image_key for p in pairings}
    if len(keys) != 1:
        raise ValueError(f"pairings of one image must share one image_key, got {sorted(map(str, keys))}")
    image = decode_ct(pairings[0].ct_headers, pairings[0].slices, config, storage_options)
    out: list[Case | QuarantineRecord] = []
    for pairing in pairings:
        try:
            out.append(annotation_case(pairing, image, config, storage_options))
        except QuarantineError as exc:
            out.append(record_for(pairing, exc))
    return out


def qc_flags(label: np.ndarray) -> tuple[str, ...]:
    """Quality findings that do not stop a case (:mod:`hcc_shards.qc_rules` on the label's counts)."""
    # Two counts, not a bincount: that would widen every voxel to int64 (8x the label's memory).
    counts = {LABEL_BY_VALUE[v].name: int(np.count_nonzero(label == v)) for v in (TUMOR, LIVER)}
    return qc_flags_of_counts(counts)


def decode_or_record(
    pairing: Pairing, config: BuildConfig = _DEFAULT_CONFIG, storage_options: dict[str, Any] | None = None
) -> Case | QuarantineRecord:
    """:func:`decode_pairing`, with expected failures returned as a ``decode`` quarantine record."""
    try:
        return decode_pairing(pairing, config, storage_options)
    except QuarantineError as exc:
        return record_for(pairing, exc)


def record_for(pairing: Pairing, exc: QuarantineError, stage: str = "decode") -> QuarantineRecord:
    """The quarantine record of a pairing that failed with ``exc``."""
    return pairing.seg.quarantine(exc.code, exc.message, stage)

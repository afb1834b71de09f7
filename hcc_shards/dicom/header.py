"""What later stages need from one DICOM file's header, as frozen, picklable values.

:func:`header_from_dataset` turns a pydicom Dataset read without its pixel data into an
:class:`InstanceHeader`. Classic single-frame images, enhanced / legacy-converted multi-frame
images and Segmentation objects are all described by the same type: per-frame facts live in
``frame_positions`` (every image) and ``seg_frames`` (SEG only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.values import convert_value

from hcc_shards.dicom.frames import FrameFacts, raw_frame_facts
from hcc_shards.quarantine import QuarantineRecord

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.7"
MEDIA_STORAGE_DIRECTORY_UID = "1.2.840.10008.1.3.10"

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Segment:
    """One item of a SEG's SegmentSequence."""

    number: int
    """SegmentNumber, as referenced by the frames (or the pixel value of a LABELMAP SEG)."""
    label: str
    """SegmentLabel (free text, e.g. 'Mass')."""
    property_type: str = ""
    """SegmentedPropertyTypeCodeSequence as 'SCHEME:CODE' (e.g. 'SCT:10200004'); '' when absent."""
    property_meaning: str = ""
    """CodeMeaning of the property type (e.g. 'Liver')."""
    category: str = ""
    """SegmentedPropertyCategoryCodeSequence as 'SCHEME:CODE'."""
    algorithm_type: str = ""
    """SegmentAlgorithmType (MANUAL, SEMIAUTOMATIC, AUTOMATIC)."""


@dataclass(frozen=True)
class SegFrame:
    """Per-frame facts of one SEG frame, in stored frame order."""

    segment_number: int
    """ReferencedSegmentNumber of the frame (0 for LABELMAP frames, which hold every segment)."""
    sources: tuple[tuple[str, int], ...]
    """(ReferencedSOPInstanceUID, ReferencedFrameNumber or 0) of each source image of the frame."""
    position: Vec3 | None
    """ImagePositionPatient of the frame's first pixel, LPS mm; None when the SEG has none."""


@dataclass(frozen=True)
class ReferencedSeries:
    """One item of ReferencedSeriesSequence."""

    series_instance_uid: str
    instance_uids: tuple[str, ...]
    """ReferencedSOPInstanceUID of each item of its ReferencedInstanceSequence."""


@dataclass(frozen=True)
class InstanceHeader:
    """Header facts of one DICOM instance (one file); picklable, no pixel data."""

    url: str
    """Where the file is (fsspec URL or local path)."""
    file_size: int
    """Size of the file in bytes."""
    bytes_read: int
    """Bytes fetched from storage to read this header."""
    sop_class_uid: str
    sop_instance_uid: str
    modality: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    series_description: str
    acquisition_number: int | None
    """AcquisitionNumber; None when absent (a single unnumbered acquisition)."""
    instance_number: int | None
    frame_of_reference_uid: str
    image_type: tuple[str, ...]
    transfer_syntax_uid: str
    rows: int
    columns: int
    number_of_frames: int
    """NumberOfFrames, 1 for single-frame objects."""
    bits_allocated: int
    orientation: tuple[float, ...] | None
    """ImageOrientationPatient (row cosine, column cosine); shared by every frame."""
    pixel_spacing: tuple[float, float] | None
    """PixelSpacing (between rows, between columns) in mm."""
    slice_thickness: float | None
    spacing_between_slices: float | None
    frame_positions: tuple[Vec3 | None, ...]
    """ImagePositionPatient of each frame (a single item for a single-frame image)."""
    rescale_slope: float | None
    rescale_intercept: float | None
    segmentation_type: str = ""
    """SEG only: BINARY, FRACTIONAL or LABELMAP."""
    fractional_type: str = ""
    """SEG only: PROBABILITY or OCCUPANCY for FRACTIONAL SEGs."""
    max_fractional_value: int | None = None
    segments: tuple[Segment, ...] = ()
    referenced_series: tuple[ReferencedSeries, ...] = ()
    """SEG only: ReferencedSeriesSequence (empty when absent, as in HCC_048)."""
    source_instance_uids: tuple[str, ...] = ()
    """SEG only: top-level SourceImageSequence / ReferencedImageSequence instance UIDs."""
    seg_frames: tuple[SegFrame, ...] = ()
    """SEG only: one item per stored frame."""
    bits_stored: int = 0
    pixel_representation: int = 0
    """0 unsigned, 1 two's complement."""
    samples_per_pixel: int = 1
    photometric_interpretation: str = ""
    pixel_data_offset: int | None = None
    """File offset of the native (7FE0,0010) PixelData value (after its element header); None when
    unknown or when the pixels cannot be read as raw bytes (encapsulated, undefined length,
    per-frame functional groups, a syntax other than implicit / explicit VR little endian)."""
    pixel_data_length: int | None = None
    """Length in bytes of that value, as its element header gives it."""
    manufacturer: str = ""
    """Manufacturer (of the equipment or software that made the object, e.g. 'QIICR' for dcmqi)."""
    content_creator_name: str = ""
    """SEG only: ContentCreatorName (a person, or the name of an algorithm)."""
    acquisition_time: str = ""
    """AcquisitionTime (HHMMSS.FFFFFF), else ContentTime, else SeriesTime; '' when none is given.
    Evidence of the contrast phase (hcc_shards.phases): later acquisitions of a study are later phases."""
    contrast_bolus_agent: str = ""
    """ContrastBolusAgent ('' when absent: no contrast recorded, not proof of none)."""
    contrast_bolus_start_time: str = ""
    """ContrastBolusStartTime (HHMMSS.FFFFFF), '' when absent."""

    @property
    def is_seg(self) -> bool:
        return self.modality == "SEG" or self.sop_class_uid in (
            SEG_SOP_CLASS_UID,
            LABEL_MAP_SEG_SOP_CLASS_UID,
        )

    @property
    def is_multiframe(self) -> bool:
        return self.number_of_frames > 1 or len(self.frame_positions) > 1

    @property
    def referenced_instance_uids(self) -> frozenset[str]:
        """Every CT instance the SEG names: series references, top-level sources and frame sources."""
        uids = set(self.source_instance_uids)
        for rs in self.referenced_series:
            uids.update(rs.instance_uids)
        for fr in self.seg_frames:
            uids.update(uid for uid, _ in fr.sources)
        return frozenset(uids)

    def quarantine(
        self, code: str, message: str, stage: str, details: tuple[tuple[str, str], ...] = ()
    ) -> QuarantineRecord:
        """A quarantine record that names this instance (its URL and identifiers)."""
        return QuarantineRecord(
            code=str(code),
            message=message,
            stage=stage,
            url=self.url,
            patient_id=self.patient_id,
            study_instance_uid=self.study_instance_uid,
            series_instance_uid=self.series_instance_uid,
            sop_instance_uid=self.sop_instance_uid,
            details=details,
        )


def header_from_dataset(
    ds: Dataset,
    *,
    url: str,
    file_size: int,
    bytes_read: int,
    pixel_data: tuple[int, int] | None = None,
    fast: bool = True,
) -> InstanceHeader:
    """Collect the header facts of ``ds`` (read with or without pixel data).

    ``pixel_data`` is the (offset, length) of the PixelData value in the file, when the caller
    found it (:func:`hcc_shards.dicom.index.index_file`). ``fast`` reads the per-frame functional
    groups from their encoded bytes (:mod:`hcc_shards.dicom.frames`) and converts plain top-level
    values without pydicom's element bookkeeping (:func:`_fast_get`) where it can; False reads
    everything through pydicom (the reference the fast paths are tested against).
    """
    get = _fast_get(ds) if fast else ds.get
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    raw = raw_frame_facts(ds) if fast else None
    if raw is not None:
        facts, first = raw
    else:
        per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [])
        facts = [_pydicom_frame_facts(item) for item in per_frame]
        first = per_frame[0] if per_frame else None

    orientation = _floats(get("ImageOrientationPatient"))
    pixel_spacing = _floats(get("PixelSpacing"))
    thickness = _float(get("SliceThickness"))
    between = _float(get("SpacingBetweenSlices"))
    slope = _float(get("RescaleSlope"))
    intercept = _float(get("RescaleIntercept"))
    for group in (shared, first):
        if group is None:
            continue
        po = _first_item(group, "PlaneOrientationSequence")
        if po is not None and orientation is None:
            orientation = _floats(po.get("ImageOrientationPatient"))
        pm = _first_item(group, "PixelMeasuresSequence")
        if pm is not None:
            pixel_spacing = pixel_spacing or _floats(pm.get("PixelSpacing"))
            thickness = thickness if thickness is not None else _float(pm.get("SliceThickness"))
            between = between if between is not None else _float(pm.get("SpacingBetweenSlices"))
        pv = _first_item(group, "PixelValueTransformationSequence")
        if pv is not None and slope is None:
            slope = _float(pv.get("RescaleSlope"))
            intercept = _float(pv.get("RescaleIntercept"))

    shared_facts = _pydicom_frame_facts(shared) if shared is not None else None
    if facts:
        fallback = shared_facts.position if shared_facts is not None else None
        positions = tuple(f.position or fallback for f in facts)
    else:
        positions = (_vec3(get("ImagePositionPatient")),)

    is_seg = str(get("Modality", "")) == "SEG"
    seg_frames = tuple(_seg_frame(f, shared_facts) for f in facts) if is_seg else ()
    return InstanceHeader(
        url=url,
        file_size=int(file_size),
        bytes_read=int(bytes_read),
        sop_class_uid=str(get("SOPClassUID", "") or ""),
        sop_instance_uid=str(get("SOPInstanceUID", "") or ""),
        modality=str(get("Modality", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        study_instance_uid=str(get("StudyInstanceUID", "") or ""),
        series_instance_uid=str(get("SeriesInstanceUID", "") or ""),
        series_number=_int(get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        acquisition_number=_int(get("AcquisitionNumber")),
        instance_number=_int(get("InstanceNumber")),
        frame_of_reference_uid=str(get("FrameOfReferenceUID", "") or ""),
        image_type=tuple(str(v) for v in _as_list(get("ImageType"))),
        transfer_syntax_uid=ts,
        rows=_int(get("Rows")) or 0,
        columns=_int(get("Columns")) or 0,
        number_of_frames=_int(get("NumberOfFrames")) or 1,
        bits_allocated=_int(get("BitsAllocated")) or 0,
        orientation=tuple(orientation) if orientation and len(orientation) == 6 else None,
        pixel_spacing=(pixel_spacing[0], pixel_spacing[1])
        if pixel_spacing and len(pixel_spacing) == 2
        else None,
        slice_thickness=thickness,
        spacing_between_slices=between,
        frame_positions=positions,
        rescale_slope=slope,
        rescale_intercept=intercept,
        segmentation_type=str(get("SegmentationType", "") or "") if is_seg else "",
        fractional_type=str(get("SegmentationFractionalType", "") or "") if is_seg else "",
        max_fractional_value=_int(get("MaximumFractionalValue")) if is_seg else None,
        segments=tuple(_segment(item) for item in ds.get("SegmentSequence") or []) if is_seg else (),
        referenced_series=tuple(_referenced_series(ds)) if is_seg else (),
        source_instance_uids=tuple(_top_level_sources(ds)) if is_seg else (),
        seg_frames=seg_frames,
        bits_stored=_int(get("BitsStored")) or 0,
        pixel_representation=_int(get("PixelRepresentation")) or 0,
        samples_per_pixel=_int(get("SamplesPerPixel")) or 1,
        photometric_interpretation=str(get("PhotometricInterpretation", "") or ""),
        pixel_data_offset=pixel_data[0] if pixel_data else None,
        pixel_data_length=pixel_data[1] if pixel_data else None,
        manufacturer=str(ds.get("Manufacturer", "") or ""),
        content_creator_name=str(ds.get("ContentCreatorName", "") or "") if is_seg else "",
        acquisition_time=_first_text(get, ("AcquisitionTime", "ContentTime", "SeriesTime")),
        contrast_bolus_agent=str(ds.get("ContrastBolusAgent", "") or "").strip(),
        contrast_bolus_start_time=_first_text(get, ("ContrastBolusStartTime",)),
    )


def _first_text(get: Callable[..., Any], keywords: Sequence[str]) -> str:
    """The first of ``keywords`` with a non-empty value, as stripped text ('' when none has one)."""
    for keyword in keywords:
        value = get(keyword)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


# -- helpers -------------------------------------------------------------------------------


_PLAIN_VRS = frozenset({"AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "SL", "SS", "TM", "UI", "UL", "US"})
"""VRs whose values do not depend on the character set: converted without the element machinery."""


@functools.cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


def _fast_get(ds: Dataset) -> Callable[..., Any]:
    """``ds.get(keyword, default)`` for top-level values, a few times cheaper per value.

    pydicom's own conversion (``pydicom.values.convert_value``, the function ``ds.get`` ends in),
    called on the raw element without making a DataElement, running the hooks and storing the
    result: about half of the header index's time on a CT slice went there. Anything else (text
    VRs, whose decoding depends on the character set; sequences; converted, deferred or big-endian
    elements; ambiguous VRs; a value pydicom cannot convert) goes through ``ds.get``.
    """

    def get(keyword: str, default: Any = None) -> Any:
        tag, vr = _tag_and_vr(keyword)
        raw = ds.get_item(tag, keep_deferred=True)
        if raw is None:
            return ds.get(keyword, default)
        if isinstance(raw, RawDataElement) and raw.value is not None and raw.is_little_endian:
            vr = raw.VR or vr
            if vr in _PLAIN_VRS:
                try:
                    return convert_value(vr, raw)
                except Exception:
                    pass
        return ds.get(keyword, default)

    return get


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _floats(value: Any) -> tuple[float, ...] | None:
    items = _as_list(value)
    if not items:
        return None
    out = tuple(_float(v) for v in items)
    if any(v is None for v in out):
        return None
    return out  # type: ignore[return-value]


def _vec3(value: Any) -> Vec3 | None:
    v = _floats(value)
    return (v[0], v[1], v[2]) if v is not None and len(v) == 3 else None


def _code(item: Dataset | None) -> tuple[str, str]:
    if item is None:
        return "", ""
    scheme = str(item.get("CodingSchemeDesignator", "") or "")
    value = str(
        item.get("CodeValue", "") or item.get("LongCodeValue", "") or item.get("URNCodeValue", "") or ""
    )
    return (f"{scheme}:{value}" if value else ""), str(item.get("CodeMeaning", "") or "")


def _segment(item: Dataset) -> Segment:
    prop, meaning = _code(_first_item(item, "SegmentedPropertyTypeCodeSequence"))
    cat, _ = _code(_first_item(item, "SegmentedPropertyCategoryCodeSequence"))
    return Segment(
        number=_int(item.get("SegmentNumber")) or 0,
        label=str(item.get("SegmentLabel", "") or ""),
        property_type=prop,
        property_meaning=meaning,
        category=cat,
        algorithm_type=str(item.get("SegmentAlgorithmType", "") or ""),
    )


def _referenced_series(ds: Dataset) -> Iterable[ReferencedSeries]:
    for item in ds.get("ReferencedSeriesSequence") or []:
        uids = tuple(
            str(ref.get("ReferencedSOPInstanceUID", ""))
            for ref in item.get("ReferencedInstanceSequence") or []
            if ref.get("ReferencedSOPInstanceUID")
        )
        yield ReferencedSeries(str(item.get("SeriesInstanceUID", "") or ""), uids)


def _top_level_sources(ds: Dataset) -> Iterable[str]:
    for keyword in ("SourceImageSequence", "ReferencedImageSequence"):
        for ref in ds.get(keyword) or []:
            uid = ref.get("ReferencedSOPInstanceUID")
            if uid:
                yield str(uid)


def _pydicom_frame_facts(item: Dataset) -> FrameFacts:
    """What :func:`hcc_shards.dicom.frames.raw_frame_facts` reads, from an item pydicom has read."""
    si = _first_item(item, "SegmentIdentificationSequence")
    number = (_int(si.get("ReferencedSegmentNumber")) or 0) if si is not None else None
    derivations = item.get("DerivationImageSequence")
    sources: tuple[tuple[str, int], ...] | None = None
    if derivations is not None:
        found = []
        for deriv in derivations:
            for src in deriv.get("SourceImageSequence") or []:
                uid = src.get("ReferencedSOPInstanceUID")
                if uid:
                    frames = _as_list(src.get("ReferencedFrameNumber"))
                    found.append((str(uid), (_int(frames[0]) or 0) if frames else 0))
        sources = tuple(found)
    pp = _first_item(item, "PlanePositionSequence")
    position = _vec3(pp.get("ImagePositionPatient")) if pp is not None else None
    return FrameFacts(segment_number=number, sources=sources, position=position)


def _seg_frame(frame: FrameFacts, shared: FrameFacts | None) -> SegFrame:
    # A SEG with one segment (or one source) may keep these macros in the shared functional groups.
    number = frame.segment_number
    if number is None and shared is not None:
        number = shared.segment_number
    sources = frame.sources
    if sources is None and shared is not None:
        sources = shared.sources
    return SegFrame(segment_number=number or 0, sources=sources or (), position=frame.position)

"""Per-frame functional groups of a multi-frame header, read from the sequence's encoded bytes.

pydicom makes a Dataset of every item of every nested sequence it converts: for a SEG of 200
frames that is 1,400 datasets and about 0.05 s, as long as the headers of a 90-slice CT series
together. The index needs four facts per frame (segment number, source images, position), so
:func:`raw_frame_facts` walks the encoded items and decodes only those values. Whatever it does
not expect (big endian, an unusual VR, a UID list, a value that does not parse, bad lengths)
makes it return None, and the caller reads the sequence with pydicom as before: the two paths
give equal results on every SEG of the test corpus (tests/dicom/test_frames.py).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

Vec3 = tuple[float, float, float]

PER_FRAME_GROUPS = 0x52009230
SEGMENT_IDENTIFICATION = 0x0062000A
REFERENCED_SEGMENT_NUMBER = 0x0062000B
DERIVATION_IMAGE = 0x00089124
SOURCE_IMAGE = 0x00082112
REFERENCED_SOP_INSTANCE_UID = 0x00081155
REFERENCED_FRAME_NUMBER = 0x00081160
PLANE_POSITION = 0x00209113
IMAGE_POSITION_PATIENT = 0x00200032

_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
"""A length field's value for 'up to the delimiter' (sequences, items, encapsulated data)."""
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class FrameFacts:
    """What one item of PerFrameFunctionalGroupsSequence says about its frame."""

    segment_number: int | None
    """ReferencedSegmentNumber (0 when unreadable); None when the item has no
    SegmentIdentificationSequence item (the shared groups may have one)."""
    sources: tuple[tuple[str, int], ...] | None
    """(ReferencedSOPInstanceUID, first ReferencedFrameNumber or 0) of each source image; None when
    the item has no DerivationImageSequence element (the shared groups may have one)."""
    position: Vec3 | None
    """PlanePositionSequence > ImagePositionPatient; None when absent or not three numbers."""


class _Unexpected(Exception):
    """The bytes are not what the fast path reads; the caller uses pydicom instead."""


# An element: (VR or None when implicit, value start, value end, items when it is a sequence
# of undefined length, parsed on the way to find its end).
_Element = tuple[bytes | None, int, int, list | None]
# An item: (its elements by tag, content start, content end).
_Item = tuple[dict[int, _Element], int, int]


def raw_frame_facts(ds: Dataset) -> tuple[list[FrameFacts], Dataset | None] | None:
    """(facts of each frame, the first item as a Dataset) from the raw bytes, or None.

    None when the sequence is absent, already converted by pydicom, or not in a form this reader
    handles; the caller then reads ``ds.PerFrameFunctionalGroupsSequence`` itself.
    """
    try:
        elem = ds.get_item(PER_FRAME_GROUPS, keep_deferred=True)
    except Exception:
        return None
    if not isinstance(elem, RawDataElement) or not elem.is_little_endian:
        return None
    buf = elem.value if elem.value is not None else _deferred_bytes(ds, elem)
    if buf is None:
        return None
    implicit = bool(elem.is_implicit_VR)
    try:
        items = _items(buf, 0, len(buf), implicit)[0]
        facts = [_facts(buf, item, implicit) for item in items]
        first = _as_dataset(buf, items[0], implicit) if items else None
    except (_Unexpected, struct.error, UnicodeDecodeError):
        return None
    except Exception:  # pydicom on the first item: let the caller's pydicom path report it
        return None
    return facts, first


# -- the walk ------------------------------------------------------------------------------


def _deferred_bytes(ds: Dataset, elem: RawDataElement) -> bytes | None:
    fp = getattr(ds, "buffer", None)
    if fp is None or elem.length == UNDEFINED_LENGTH or elem.value_tell is None:
        return None
    try:
        here = fp.tell()
        fp.seek(elem.value_tell)
        data = fp.read(elem.length)
        fp.seek(here)
    except Exception:
        return None
    return data if data is not None and len(data) == elem.length else None


def _tag_at(buf: bytes, pos: int, n: int) -> int:
    """The (group << 16 | element) tag at ``pos``, with the 8 bytes of an element header there."""
    if pos + 8 > n:
        raise _Unexpected(f"truncated at byte {pos}")
    group, element = _TAG.unpack_from(buf, pos)
    return group << 16 | element


def _items(buf: bytes, pos: int, end: int | None, implicit: bool) -> tuple[list[_Item], int]:
    """Items of a sequence value from ``pos`` to ``end`` (None: to its delimiter); (items, next)."""
    out: list[_Item] = []
    n = len(buf)
    while end is None or pos < end:
        tag = _tag_at(buf, pos, n)
        (length,) = _U32.unpack_from(buf, pos + 4)
        pos += 8
        if tag == _SEQUENCE_END:
            return out, pos
        if tag != _ITEM:
            raise _Unexpected(f"expected an item, found tag {tag:08X}")
        if length == UNDEFINED_LENGTH:
            start = pos
            elements, content_end, pos = _elements(buf, pos, None, implicit)
            out.append((elements, start, content_end))
        else:
            stop = pos + length
            if stop > n or (end is not None and stop > end):
                raise _Unexpected("item runs past its sequence")
            elements, _, _ = _elements(buf, pos, stop, implicit)
            out.append((elements, pos, stop))
            pos = stop
    return out, pos


def _elements(buf: bytes, pos: int, end: int | None, implicit: bool) -> tuple[dict[int, _Element], int, int]:
    """Elements from ``pos`` to ``end`` (None: to an item delimiter); (elements, content end, next)."""
    found: dict[int, _Element] = {}
    n = len(buf)
    while end is None or pos < end:
        tag = _tag_at(buf, pos, n)
        if tag == _ITEM_END:
            if end is not None:
                raise _Unexpected("item delimiter inside an item of defined length")
            return found, pos, pos + 8
        vr: bytes | None
        if implicit:
            vr = None
            (length,) = _U32.unpack_from(buf, pos + 4)
            pos += 8
        else:
            vr = bytes(buf[pos + 4 : pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > n:
                    raise _Unexpected("truncated element")
                (length,) = _U32.unpack_from(buf, pos + 8)
                pos += 12
            else:
                (length,) = _U16.unpack_from(buf, pos + 6)
                pos += 8
        if length == UNDEFINED_LENGTH:
            if vr not in (b"SQ", None):
                raise _Unexpected(f"undefined length with VR {vr!r}")
            start = pos
            items, pos = _items(buf, pos, None, implicit)
            found[tag] = (b"SQ", start, pos, items)
            continue
        stop = pos + length
        if stop > n or (end is not None and stop > end):
            raise _Unexpected("element runs past its item")
        found[tag] = (vr, pos, stop, None)
        pos = stop
    if end is not None and pos != end:
        raise _Unexpected("elements overrun their item")
    return found, pos, pos


def _sequence(buf: bytes, elem: _Element | None, implicit: bool) -> list[_Item] | None:
    if elem is None:
        return None
    vr, start, stop, items = elem
    if items is not None:
        return items
    if vr not in (b"SQ", None):
        raise _Unexpected(f"sequence with VR {vr!r}")
    return _items(buf, start, stop, implicit)[0]


def _text(buf: bytes, elem: _Element, vrs: tuple[bytes, ...]) -> str:
    vr, start, stop, _ = elem
    if vr is not None and vr not in vrs:
        raise _Unexpected(f"VR {vr!r}, expected one of {vrs}")
    return buf[start:stop].decode("ascii")


def _facts(buf: bytes, item: _Item, implicit: bool) -> FrameFacts:
    elements = item[0]
    number: int | None = None
    si = _sequence(buf, elements.get(SEGMENT_IDENTIFICATION), implicit)
    if si:
        number = _unsigned_short(buf, si[0][0].get(REFERENCED_SEGMENT_NUMBER)) or 0
    sources: tuple[tuple[str, int], ...] | None = None
    derivations = _sequence(buf, elements.get(DERIVATION_IMAGE), implicit)
    if derivations is not None:
        found: list[tuple[str, int]] = []
        for deriv in derivations:
            for src in _sequence(buf, deriv[0].get(SOURCE_IMAGE), implicit) or []:
                uid_elem = src[0].get(REFERENCED_SOP_INSTANCE_UID)
                if uid_elem is None:
                    continue
                uid = _text(buf, uid_elem, (b"UI",)).rstrip("\0 ")
                if "\\" in uid:
                    raise _Unexpected("a list of UIDs")
                if uid:
                    found.append((uid, _first_integer(buf, src[0].get(REFERENCED_FRAME_NUMBER))))
        sources = tuple(found)
    position = None
    pp = _sequence(buf, elements.get(PLANE_POSITION), implicit)
    if pp:
        position = _position(buf, pp[0][0].get(IMAGE_POSITION_PATIENT))
    return FrameFacts(segment_number=number, sources=sources, position=position)


def _unsigned_short(buf: bytes, elem: _Element | None) -> int | None:
    if elem is None:
        return None
    vr, start, stop, _ = elem
    if vr not in (b"US", None):
        raise _Unexpected(f"ReferencedSegmentNumber with VR {vr!r}")
    if stop - start != 2:
        if stop == start:
            return None
        raise _Unexpected("ReferencedSegmentNumber with several values")
    return _U16.unpack_from(buf, start)[0]


def _first_integer(buf: bytes, elem: _Element | None) -> int:
    if elem is None:
        return 0
    text = _text(buf, elem, (b"IS",)).strip(" \0")
    if not text:
        return 0
    first = text.split("\\")[0].strip()
    try:
        return int(float(first)) or 0
    except ValueError as exc:
        raise _Unexpected(f"ReferencedFrameNumber {first!r}") from exc


def _position(buf: bytes, elem: _Element | None) -> Vec3 | None:
    if elem is None:
        return None
    text = _text(buf, elem, (b"DS",)).strip(" \0")
    if not text:
        return None
    try:
        values = [float(v) for v in text.split("\\")]
    except ValueError as exc:
        raise _Unexpected(f"ImagePositionPatient {text!r}") from exc
    return (values[0], values[1], values[2]) if len(values) == 3 else None


def _as_dataset(buf: bytes, item: _Item, implicit: bool) -> Dataset:
    _, start, stop = item
    return read_dataset(io.BytesIO(buf[start:stop]), implicit, True)

"""A decompression bomb: a small Deflated Explicit VR Little Endian file whose private element
inflates to hundreds of MiB (the ``deflate_bomb`` fault of :mod:`hcc_shards.synth.faults`).

The inflated dataset never exists in memory: the dataset is encoded in two halves around the
private element, and the element's zero bytes are one compressed MiB repeated, so that making a
256 MiB bomb holds about 1 MiB of it and the file is about 256 KiB.
"""

from __future__ import annotations

import copy
import struct
import zlib

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_dataset, write_file_meta_info

from hcc_shards.dicom.limits import DEFLATED_SYNTAX

BOMB_INFLATED_BYTES = 256 * 1024 * 1024
"""Zero bytes of the private element: past every read limit of a small image."""
PRIVATE_GROUP = 0x0029
"""Group of the private element: after the image attributes (0028), where vendors put theirs."""
PRIVATE_CREATOR = "HCC SHARDS SYNTH BOMB"
_ZERO_STEP = 1024 * 1024


def deflate_bomb_bytes(ds: Dataset, inflated: int = BOMB_INFLATED_BYTES, group: int = PRIVATE_GROUP) -> bytes:
    """Part 10 bytes of ``ds`` as Deflated Explicit VR Little Endian, with a private OB element of
    ``inflated`` zero bytes, (group,1000) under :data:`PRIVATE_CREATOR`, inside the deflate stream.

    ``ds`` (with its file meta) is left as it was; it must have no element of ``group`` (an odd
    group above 0008). ``inflated`` must be even (OB values are).
    """
    if inflated % 2 or inflated < 0:
        raise ValueError(f"inflated must be an even number of bytes >= 0, got {inflated}")
    if group % 2 == 0 or group <= 0x0008:
        raise ValueError(f"group must be an odd (private) group above 0008, got {group:04X}")
    head, tail = Dataset(), Dataset()
    # Encoded in two halves, PixelData's "OB or OW" would lose the BitsAllocated that decides it.
    for elem in correct_ambiguous_vr(copy.deepcopy(ds), is_little_endian=True):
        if elem.tag.group == group:
            raise ValueError(f"the dataset has {elem.tag} already, in the bomb's private group")
        (head if elem.tag.group < group else tail).add(elem)
    head.add_new((group, 0x0010), "LO", PRIVATE_CREATOR)
    block = 0x10  # the creator (gggg,0010) reserves elements (gggg,1000)-(gggg,10FF)
    element = struct.pack("<HH2sHI", group, block << 8, b"OB", 0, inflated)

    # After a full flush a deflate stream needs nothing that came before, so the compressed MiB of
    # zeros is made once and repeated: the bomb costs milliseconds, not seconds of zlib.
    whole, rest = divmod(inflated, _ZERO_STEP)
    parts = [
        _deflated(_explicit_le(head) + element, zlib.Z_FULL_FLUSH),
        _deflated(bytes(_ZERO_STEP), zlib.Z_FULL_FLUSH) * whole,
        _deflated(bytes(rest) + _explicit_le(tail), zlib.Z_FINISH),
    ]
    body = b"".join(parts)
    if len(body) % 2:
        body += b"\0"  # PS3.5 A.5: the deflated stream is padded to an even length

    meta = Dataset()
    meta.update(ds.file_meta)
    meta.TransferSyntaxUID = DEFLATED_SYNTAX
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)  # type: ignore[arg-type]
    return fp.getvalue() + body


def _deflated(data: bytes, mode: int) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush(mode)


def _explicit_le(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()

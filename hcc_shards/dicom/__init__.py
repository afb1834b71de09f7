"""DICOM core: index headers, check series geometry, pair SEG with CT, decode both on one grid.

Pure functions on pydicom/numpy (no Beam); the pipeline wraps them. Order of operations:
:func:`index_file` (header only) -> group by PatientID -> :func:`pair_patient` ->
:func:`decode_pairing` (reads the chosen CT slices and the SEG) -> :class:`hcc_shards.case.Case`.
"""

from hcc_shards.dicom.decode import decode_labels, decode_or_record, decode_pairing
from hcc_shards.dicom.header import InstanceHeader, ReferencedSeries, SegFrame, Segment
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import (
    METHOD_FRAME_OF_REFERENCE,
    METHOD_REFERENCED_INSTANCES,
    METHOD_REFERENCED_SERIES,
    Pairing,
    pair_patient,
)
from hcc_shards.dicom.stack import Block, SliceRef, Stack, check_stack, series_stacks

__all__ = [
    "METHOD_FRAME_OF_REFERENCE",
    "METHOD_REFERENCED_INSTANCES",
    "METHOD_REFERENCED_SERIES",
    "Block",
    "InstanceHeader",
    "Pairing",
    "ReferencedSeries",
    "SegFrame",
    "Segment",
    "SliceRef",
    "Stack",
    "check_stack",
    "decode_labels",
    "decode_or_record",
    "decode_pairing",
    "index_file",
    "pair_patient",
    "series_stacks",
]

"""On-disk names of prediction sets (docs/FORMAT.md, "Predictions"), shared by writer, reader and verify.

Standard library only: the thin reader imports it.
"""

from __future__ import annotations

import re

from hcc_shards.format import COMPLETE_DIR

__all__ = [
    "PREDICTIONS_DIR",
    "PREDICTION_MARKERS_DIR",
    "check_prediction_name",
    "prediction_marker_path",
    "prediction_table_path",
]

PREDICTIONS_DIR = "predictions"
"""Folder of the prediction tables under a version root (outside every zarr group)."""
PREDICTION_MARKERS_DIR = f"{COMPLETE_DIR}/predictions"
"""Folder of the prediction sets' completion markers under a version root."""
TABLE_ENDING = ".parquet"
NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A prediction set name: one file name on every store (letters, digits, ``.``, ``_``, ``-``)."""


def check_prediction_name(name: str) -> str:
    """``name`` when it is a valid prediction set name, else ValueError saying what is allowed."""
    if not isinstance(name, str) or not NAME_CHARS.fullmatch(name) or name.endswith(TABLE_ENDING):
        raise ValueError(
            f"prediction name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit, got {name!r}"
        )
    return name


def prediction_table_path(name: str) -> str:
    """``predictions/<name>.parquet``: the rows of one prediction set, relative to the version root."""
    return f"{PREDICTIONS_DIR}/{check_prediction_name(name)}{TABLE_ENDING}"


def prediction_marker_path(name: str) -> str:
    """``complete/predictions/<name>.json``: the completion marker of one prediction set."""
    return f"{PREDICTION_MARKERS_DIR}/{check_prediction_name(name)}.json"


def name_of_table(file_name: str) -> str | None:
    """The prediction set name of a file listed under ``predictions/``; None for any other file."""
    if not file_name.endswith(TABLE_ENDING):
        return None
    name = file_name[: -len(TABLE_ENDING)]
    return name if NAME_CHARS.fullmatch(name) else None

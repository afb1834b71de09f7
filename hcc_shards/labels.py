"""The label contract: integer values, names and display colours. numpy-free."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Label:
    """One class of the label volume."""

    value: int
    """Voxel value in the uint8 label array."""
    name: str
    """Machine name, used in manifest column suffixes (``voxels_<name>``)."""
    display: str
    """Human name, as in the dataset card."""
    rgba: tuple[int, int, int, int]
    """Display colour (0-255), as in the dataset card's picture."""


BACKGROUND = 0
LIVER = 1
TUMOR = 2
PORTAL_VEIN = 3
AORTA = 4

LABELS: tuple[Label, ...] = (
    Label(LIVER, "liver", "liver", (255, 0, 0, 255)),
    Label(TUMOR, "tumor", "liver tumor", (0, 255, 0, 255)),
    Label(PORTAL_VEIN, "portal_vein", "portal vein", (0, 0, 255, 255)),
    Label(AORTA, "aorta", "aorta", (255, 255, 0, 255)),
)
"""Foreground labels in value order."""

LABEL_BY_VALUE: dict[int, Label] = {lab.value: lab for lab in LABELS}
LABEL_BY_NAME: dict[str, Label] = {lab.name: lab for lab in LABELS}

OVERLAP_PRIORITY: tuple[int, ...] = (TUMOR, PORTAL_VEIN, AORTA, LIVER)
"""Where SEG segments overlap, the earlier label in this tuple wins."""

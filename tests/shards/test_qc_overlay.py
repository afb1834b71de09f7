"""Per-case QC images: orientation letters from the grid's direction, and a label legend."""

from __future__ import annotations

import io

import numpy as np
from phantoms import default_structures, make_case
from PIL import Image

from hcc_shards.geometry import axis_letters, opposite_letter
from hcc_shards.shards.qc import PANEL_PX, case_png


def test_axis_letters_follow_the_direction():
    axial = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # z->S, y->P, x->L
    assert axis_letters(axial) == ("S", "P", "L")
    feet_first = axial @ np.diag([-1.0, 1.0, -1.0])
    assert axis_letters(feet_first) == ("I", "P", "R")
    assert [opposite_letter(c) for c in "RLAPIS"] == list("LRPASI")


def test_case_png_has_letters_and_legend():
    case = make_case(
        (20, 64, 64), (5.0, 2.0, 2.0), patient_id="P", seg_uid="1.2", structures=default_structures(scale=0.5)
    )
    png = case_png(
        case.image, case.label, case.geometry.spacing, title="t", direction=case.geometry.direction
    )
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    header = img.shape[0] - PANEL_PX
    yellow = (img[..., 0] > 200) & (img[..., 1] > 200) & (img[..., 2] < 80)
    # Letters sit at the middle of the axial panel's top and left edges.
    axial_width = PANEL_PX  # 64 x 2 mm square
    assert yellow[header : header + 14, axial_width // 2 - 8 : axial_width // 2 + 8].any()
    assert yellow[header + PANEL_PX // 2 - 8 : header + PANEL_PX // 2 + 8, :12].any()
    # The legend under the title holds a swatch of every label colour.
    from hcc_shards.labels import LABELS

    legend = img[:header].reshape(-1, 3)
    for lab in LABELS:
        assert (legend == np.asarray(lab.rgba[:3], dtype=np.uint8)).all(axis=1).any(), lab.name

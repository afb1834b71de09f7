"""The tumour size histogram of qc/tumor_sizes.png: log bins, one series per source, largest named."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from hcc_shards.shards.manifest import MANIFEST_COLUMNS, ManifestRow
from hcc_shards.shards.qc_cohort import TUMOR_SIZE_BINS, tumor_sizes, tumor_sizes_png


def _row(case_id: str, source: str, tumor_ml: float | None) -> ManifestRow:
    kw = dict.fromkeys(MANIFEST_COLUMNS)
    kw.update(case_id=case_id, split="train", annotation_source=source, source_volume_ml_tumor=tumor_ml)
    if tumor_ml is None:
        kw["annotated_labels"] = ("liver",)
    return ManifestRow(**kw)


ROWS = [
    _row("HCC_001_m", "manual", 2.0),
    _row("HCC_002_m", "manual", 40.0),
    _row("HCC_003_m", "manual", 900.0),
    _row("HCC_003_a", "ai", 850.0),
    _row("HCC_004_a", "ai", 0.3),
    _row("HCC_005_c", "ai_corrected", 12.0),
    _row("HCC_006_m", "manual", 0.0),  # defines the tumour, holds none: counted apart
    _row("HCC_007_a", "ai", None),  # does not define the tumour: left out
]


def test_bins_are_log_spaced_and_each_source_is_its_own_series() -> None:
    sizes = tumor_sizes(ROWS)
    edges = np.asarray(sizes.edges)
    assert edges.size == TUMOR_SIZE_BINS + 1
    assert edges[0] == 0.3 and edges[-1] == 900.0
    assert np.allclose(np.diff(np.log(edges)), np.log(900.0 / 0.3) / TUMOR_SIZE_BINS)
    assert list(sizes.counts) == ["manual", "ai", "ai_corrected"]
    assert {s: sum(c) for s, c in sizes.counts.items()} == {"manual": 3, "ai": 2, "ai_corrected": 1}
    assert sizes.counts["ai"][0] == 1 and sizes.counts["ai"][-1] == 1  # 0.3 and 850 cm3
    assert sizes.named == (("HCC_003_m", 900.0), ("HCC_003_a", 850.0), ("HCC_002_m", 40.0))
    assert sizes.without_tumor == 1


def test_the_figure_is_a_png_also_without_any_tumour() -> None:
    for rows in (ROWS, [_row("HCC_006_m", "manual", 0.0)], [_row("HCC_001_m", "manual", 5.0)]):
        image = Image.open(io.BytesIO(tumor_sizes_png(rows)))
        assert image.format == "PNG" and image.size[0] > 400
    assert tumor_sizes([_row("HCC_006_m", "manual", 0.0)]).edges == ()
    one = tumor_sizes([_row("HCC_001_m", "manual", 5.0)])
    assert one.edges[0] < 5.0 < one.edges[-1] and sum(one.counts["manual"]) == 1

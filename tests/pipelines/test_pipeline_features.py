"""--features: features.parquet of a build equals pyradiomics run directly on the stored arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pipeline_helpers import IN_PROCESS, Cohort, build, case_arrays, read_table, version_dir

from hcc_shards.features import FEATURE_LABELS, extractor, sitk_pair


def test_features_equal_the_library_run_directly(small_cohort: Cohort, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = build(small_cohort.root, str(out), *IN_PROCESS, "--features")
    vdir = version_dir(out)
    table = pq.read_table(vdir / "features.parquet").to_pylist()
    rows = read_table(vdir / "manifest.parquet")
    assert {r["case_id"] for r in table} == {r["case_id"] for r in rows}
    ext = extractor()
    checked = 0
    for row in rows:
        arrays = case_arrays(vdir, row)
        img, msk = sitk_pair(arrays["image"], arrays["label"], row["spacing_zyx"])
        for value, name in FEATURE_LABELS:
            got = [t for t in table if t["case_id"] == row["case_id"] and t["label"] == name]
            if not np.any(arrays["label"] == value):
                assert not got
                continue
            (got_row,) = got
            direct = {
                k: float(np.asarray(v))
                for k, v in ext.execute(img, msk, label=value).items()
                if k.startswith("original_")
            }
            assert len(direct) == 107
            for k, v in direct.items():
                np.testing.assert_allclose(got_row[k], v, rtol=1e-9, atol=1e-12, err_msg=k, equal_nan=True)
            checked += 1
    assert checked >= 3
    doc = json.loads((vdir / "dataset.json").read_text())
    assert doc["features"]["settings"]["bin_width_hu"] == 25.0
    assert "## Radiomics features" in (vdir / "DATASET.md").read_text()
    again = build(small_cohort.root, str(out), *IN_PROCESS, "--features")  # resumed cases keep theirs
    assert not again.committed and summary.committed

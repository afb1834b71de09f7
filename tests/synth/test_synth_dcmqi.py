"""dcmqi's own converter and our dcmqi-style writer give SEGs that decode to the same labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.decode import decode_labels
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.pairing import pair_patient
from hcc_shards.synth.cohort import _header_only, encode_dataset
from hcc_shards.synth.ct import render_series
from hcc_shards.synth.dcmqi import (
    as_dcmqi_writes,
    dcmqi_seg,
    itkimage2segimage,
    manual_segments,
    run_itkimage2segimage,
)
from hcc_shards.synth.phantom import label_map
from hcc_shards.synth.plan import plan_patient

pytestmark = pytest.mark.skipif(itkimage2segimage() is None, reason="dcmqi (pip install dcmqi) not installed")

SEED, INDEX = 5, 17
"""A patient without quirk whose annotated series is 46 slices of 512 x 512."""


def _decode(ct_paths: list[Path], seg_path: Path) -> np.ndarray:
    config = BuildConfig()
    headers = [index_file(str(p), None, config) for p in [*ct_paths, seg_path]]
    assert all(isinstance(h, InstanceHeader) for h in headers), headers
    pairings, records = pair_patient(headers, config)
    assert records == [] and len(pairings) == 1
    label, _ = decode_labels(pairings[0], config)
    return label


def test_full_size_seg_from_dcmqi_and_from_highdicom_decode_to_identical_labels(tmp_path: Path) -> None:
    plan = plan_patient(SEED, INDEX, "full")
    assert plan.seg is not None and plan.seg.grid is None
    k, i = plan.seg.study_index, plan.seg.series_index
    rendered = render_series(plan, k, i)
    geometry = plan.annotated_series.geometry
    assert geometry.shape[1:] == (512, 512)
    ct_dir = tmp_path / "ct"
    ct_dir.mkdir()
    ct_paths = []
    for ds in rendered.datasets:
        path = ct_dir / f"{int(ds.InstanceNumber):04d}.dcm"
        path.write_bytes(encode_dataset(ds))
        ct_paths.append(path)
    labels = label_map(rendered.raster.segments)
    masks = np.stack([labels == v for v in (1, 2, 3, 4)], axis=-1)
    assert all(masks[..., c].any() for c in range(4))

    ours = tmp_path / "highdicom.dcm"
    seg = dcmqi_seg(
        _header_only(rendered.datasets, plan.seg.acquisition_number),
        masks,
        manual_segments(),
        series_uid="2.25.1001",
        sop_uid="2.25.1002",
        series_description="Segmentation",
        date=plan.studies[k].date,
        seed=SEED,
    )
    ours.write_bytes(encode_dataset(as_dcmqi_writes(seg)))
    theirs = run_itkimage2segimage(
        labels, geometry, ct_paths, manual_segments(), tmp_path / "dcmqi.dcm", workdir=tmp_path / "work"
    )

    from_ours, from_dcmqi = _decode(ct_paths, ours), _decode(ct_paths, theirs)
    assert from_ours.shape == geometry.shape
    np.testing.assert_array_equal(from_dcmqi, from_ours)
    np.testing.assert_array_equal(from_ours, labels)

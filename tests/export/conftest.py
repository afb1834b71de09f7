import sys
from pathlib import Path

import numpy as np
import pytest

from hcc_shards.case import Case, Provenance
from hcc_shards.config import BuildConfig
from hcc_shards.geometry import Geometry

shards = pytest.importorskip("hcc_shards.shards")

sys.path.insert(0, str(Path(__file__).parents[1] / "read"))
from miniwriter import phantom  # noqa: E402

SHAPES = [(12, 40, 36), (10, 36, 32), (11, 30, 34)]
SPLITS = ("train", "train", "val")
# An oblique, left-right flipped grid: any axis mix-up or missed LPS -> RAS sign shows.
_C, _S = np.cos(0.3), np.sin(0.3)
DIRECTION = np.array([[0.0, -_S, -_C], [0.0, _C, -_S], [1.0, 0.0, 0.0]])


def _cases() -> list[Case]:
    out = []
    for i, shape in enumerate(SHAPES):
        image, label = phantom(shape, seed=20 + i)
        geometry = Geometry.from_components(
            shape=shape, spacing_zyx=(2.5, 0.9, 0.8), origin_lps=(10.0 + i, -30.0, 55.5), direction=DIRECTION
        )
        prov = Provenance(
            patient_id=f"P{i}",
            study_instance_uid=f"1.2.3.{i}",
            ct_series_instance_uid=f"1.2.3.{i}.1",
            ct_acquisition_number=None,
            seg_sop_instance_uid=f"1.2.3.{i}.2",
            seg_series_instance_uid=f"1.2.3.{i}.3",
        )
        out.append(Case(image=image, label=label, geometry=geometry, provenance=prov))
    return out


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[str, list[Case]]:
    """A committed dataset of three oblique cases written by the real writer."""
    url = str(tmp_path_factory.mktemp("built-export"))
    config = BuildConfig(chunk_shape=(8, 16, 16), shard_shape=(16, 32, 32), class_locations_samples=50)
    cases = _cases()
    rows = [
        shards.write_case(c, shards.version_url(url, config), config, split=s)
        for c, s in zip(cases, SPLITS, strict=True)
    ]
    shards.commit_dataset(url, rows, [], config, {"name": "export test"})
    return url, cases

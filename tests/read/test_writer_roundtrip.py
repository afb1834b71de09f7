"""The reader against the real writer (hcc_shards.shards): local disk and the GCS emulator."""

import numpy as np
import pytest

from hcc_shards.case import Case, Provenance
from hcc_shards.config import BuildConfig
from hcc_shards.geometry import Geometry
from hcc_shards.read import IOSettings, PatchStream, RandomPatches, open_dataset

shards = pytest.importorskip("hcc_shards.shards")

from miniwriter import phantom  # noqa: E402

SHAPES = [(20, 48, 40), (13, 40, 37)]


def _cases() -> list[Case]:
    out = []
    for i, shape in enumerate(SHAPES):
        image, label = phantom(shape, seed=10 + i)
        geometry = Geometry.from_components(
            shape=shape, spacing_zyx=(2.0, 0.8, 0.8), origin_lps=(5.0, -3.0, i)
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


def _build(url: str, config: BuildConfig, storage_options=None) -> list[Case]:
    cases = _cases()
    rows = [
        shards.write_case(c, shards.version_url(url, config), config, storage_options, split=s)
        for c, s in zip(cases, ("train", "val"), strict=True)
    ]
    shards.commit_dataset(url, rows, [], config, {"name": "roundtrip"}, storage_options)
    return cases


CONFIGS = {
    "zstd": BuildConfig(chunk_shape=(8, 16, 16), shard_shape=(16, 32, 32), class_locations_samples=50),
    "blosc": BuildConfig(
        chunk_shape=(4, 16, 8), shard_shape=(8, 32, 32), compressor="blosc", class_locations_samples=50
    ),
}


def _built(tmp_path_factory, name):
    url = str(tmp_path_factory.mktemp(f"built-{name}"))
    return url, _build(url, CONFIGS[name]), CONFIGS[name]


@pytest.fixture(scope="module")
def zstd_built(tmp_path_factory):
    return _built(tmp_path_factory, "zstd")


@pytest.fixture(scope="module")
def blosc_built(tmp_path_factory):
    return _built(tmp_path_factory, "blosc")


@pytest.fixture(params=["zstd_built", "blosc_built"])
def built(request):
    return request.getfixturevalue(request.param)


def test_arrays_geometry_and_foreground_match_the_writer_input(built):
    url, cases, config = built
    ds = open_dataset(url)
    assert ds.version == config.config_hash()
    assert sorted(ds.case_ids) == sorted(c.case_id for c in cases)
    assert ds.filter(split="val").case_ids == (cases[1].case_id,)
    for src in cases:
        case = ds.case(src.case_id)
        assert case.image.meta.chunk_shape == config.chunk_shape
        np.testing.assert_array_equal(case.image[...], src.image)
        np.testing.assert_array_equal(case.label[...], src.label)
        np.testing.assert_array_equal(case.image[3:11, 5:, -9:], src.image[3:11, 5:, -9:])
        assert case.geometry.is_close(src.geometry, atol_mm=1e-6)
        counts = case.foreground_counts()
        for value, name in ds.label_names.items():
            assert counts[name] == int((src.label == value).sum())
            locs = case.foreground(name)
            assert len(locs) == (min(50, counts[name]) if counts[name] else 0) or len(locs) >= 50
            assert np.all(src.label[tuple(locs.T)] == value)


def test_patch_stream_over_the_gcs_emulator_equals_local(zstd_built, gcs):
    import fsspec

    url = zstd_built[0]
    remote = f"{gcs.make_bucket('reader-roundtrip')}/out"
    fsspec.filesystem("gs", **gcs.storage_options).put(url + "/", remote, recursive=True, batch_size=4)
    sampler = RandomPatches((8, 24, 24), samples_per_epoch=8, foreground_probability=0.5)
    local = list(PatchStream(open_dataset(url), sampler, seed=2, threads=2))
    # The emulator serves one connection at a time with a listen backlog of 5: keep few in flight.
    remote_ds = open_dataset(remote, gcs.storage_options, io_settings=IOSettings(max_concurrency=4))
    got = list(PatchStream(remote_ds, sampler, seed=2, threads=2))
    assert [p.spec for p in got] == [p.spec for p in local]
    for a, b in zip(got, local, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
    assert remote_ds.store.stats.requests > 0 and not remote_ds.store.is_local


def test_forced_foreground_patches_use_the_writers_locations(zstd_built):
    url = zstd_built[0]
    ds = open_dataset(url)
    sampler = RandomPatches((8, 16, 16), samples_per_epoch=24, foreground_probability=1.0)
    value_of = {name: value for value, name in ds.label_names.items()}
    for patch in PatchStream(ds, sampler, seed=5, threads=0):
        assert patch.spec.label is not None
        assert (patch.label == value_of[patch.spec.label]).any()


def test_corrupted_chunk_of_a_written_case_names_it(zstd_built, tmp_path):
    import os
    import shutil

    from hcc_shards.errors import CorruptChunkError

    url, cases, _ = zstd_built
    root = tmp_path / "copy"
    shutil.copytree(url, root)
    ds = open_dataset(str(root))
    case = ds.case(cases[0].case_id)
    shard = os.path.join(str(root), "versions", ds.version, case.image_path, "0", "c", "0", "0", "0")
    with open(shard, "r+b") as f:
        f.seek(case.image.meta.index_nbytes + 3)  # inside the first stored chunk
        byte = f.read(1)
        f.seek(case.image.meta.index_nbytes + 3)
        f.write(bytes([byte[0] ^ 0x55]))
    with pytest.raises(CorruptChunkError, match=rf"case '{cases[0].case_id}' image: chunk"):
        case.image[...]

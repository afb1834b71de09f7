"""One shard index for writer and reader: the writer's shards, parsed by the reader, and zarr-python's.

The writer encodes every shard itself (hcc_shards.shards.writer); the reader parses the index with
hcc_shards.read.chunks.parse_shard_index. Both go through hcc_shards.shard_index.ShardIndex, and
both must agree with zarr-python's own sharding codec on which chunks are absent and on the bytes
of every stored one.
"""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import zarr

from hcc_shards.case import Case, Provenance
from hcc_shards.config import BuildConfig
from hcc_shards.errors import CorruptChunkError
from hcc_shards.format import ARRAY, CHUNK_KEY_PREFIX, metadata_path
from hcc_shards.geometry import Geometry
from hcc_shards.read.chunks import decode_chunk, parse_array_meta, parse_shard_index
from hcc_shards.shard_index import ABSENT, ShardIndex
from hcc_shards.shards import version_url, write_case

CONFIG = BuildConfig(chunk_shape=(4, 8, 8), shard_shape=(8, 16, 16), class_locations_samples=20)
SHAPE = (11, 30, 21)  # not a multiple of the shard: the last shards have slots outside the array


def _case() -> Case:
    rng = np.random.default_rng(3)
    image = rng.integers(-200, 200, size=SHAPE).astype(np.int16)
    image[:, :, 16:] = -1024  # the fill value: the chunks there are absent from the image's shards
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[1:4, 2:7, 3:7] = 1  # one corner: most label chunks are absent, and whole label shards
    label[2:3, 3:5, 4:6] = 2
    geometry = Geometry.from_components(shape=SHAPE, spacing_zyx=(2.0, 1.0, 1.0), origin_lps=(0.0, 0.0, 0.0))
    prov = Provenance(
        patient_id="P",
        study_instance_uid="1.2",
        ct_series_instance_uid="1.2.1",
        ct_acquisition_number=None,
        seg_sop_instance_uid="1.2.2",
        seg_series_instance_uid="1.2.3",
    )
    return Case(image=image, label=label, geometry=geometry, provenance=prov)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    case = _case()
    vurl = version_url(str(tmp_path_factory.mktemp("shard-index")), CONFIG)
    row = write_case(case, vurl, CONFIG, split="train")
    return case, Path(vurl), row


def _shards(data: np.ndarray, shard: tuple[int, ...]):
    return itertools.product(*(range(math.ceil(n / s)) for n, s in zip(data.shape, shard, strict=True)))


def _expected_absent(data: np.ndarray, shard_coords, meta) -> np.ndarray:
    """Per inner chunk of the shard (C order): outside the array, or all fill value."""
    out = []
    for inner in itertools.product(*(range(n) for n in meta.chunks_per_shard)):
        lo = [
            s * g + i * c
            for s, g, i, c in zip(shard_coords, meta.grid_shape, inner, meta.chunk_shape, strict=True)
        ]
        block = data[tuple(slice(a, a + c) for a, c in zip(lo, meta.chunk_shape, strict=True))]
        out.append(block.size == 0 or not (block != meta.fill_value).any())
    return np.array(out)


def _objects(array_dir: Path, meta, data: np.ndarray) -> dict[tuple[int, ...], bytes | None]:
    found = {}
    for coords in _shards(data, meta.grid_shape):
        obj = array_dir.joinpath(CHUNK_KEY_PREFIX, *(str(c) for c in coords))
        found[coords] = obj.read_bytes() if obj.exists() else None
    return found


@pytest.mark.parametrize("which", ["image", "label"])
def test_the_reader_parses_the_writers_index(written, which):
    case, vurl, row = written
    group = row.image_path if which == "image" else row.path
    data = case.image if which == "image" else case.label
    array_dir = vurl / group / ARRAY
    meta = parse_array_meta(json.loads((vurl / metadata_path(f"{group}/{ARRAY}")).read_text()), where=which)
    assert meta.sharded and meta.index_at_start and meta.index_crc
    saw_absent_chunk = saw_missing_shard = False
    for coords, blob in _objects(array_dir, meta, data).items():
        absent = _expected_absent(data, coords, meta)
        if blob is None:
            assert absent.all(), f"{which} shard {coords} has stored chunks but no object"
            saw_missing_shard = True
            continue
        index = parse_shard_index(meta, blob[: meta.index_nbytes], what=f"{which} {coords}")
        np.testing.assert_array_equal(index.absent(), absent)
        assert (index.entries()[absent] == ABSENT).all()
        saw_absent_chunk |= bool(absent.any())
        starts, ends, present = index.byte_ranges(np.arange(index.n_chunks))
        assert present == (~absent).tolist()
        assert all(s == e == 0 for s, e, a in zip(starts, ends, absent, strict=True) if a)
        for k, inner in enumerate(itertools.product(*(range(n) for n in meta.chunks_per_shard))):
            if absent[k]:
                continue
            chunk = decode_chunk(meta, blob[starts[k] : ends[k]], what=f"{which} {coords} chunk {k}")
            lo = [
                s * g + i * c
                for s, g, i, c in zip(coords, meta.grid_shape, inner, meta.chunk_shape, strict=True)
            ]
            part = data[tuple(slice(a, a + c) for a, c in zip(lo, meta.chunk_shape, strict=True))]
            np.testing.assert_array_equal(chunk[tuple(slice(0, n) for n in part.shape)], part)
    assert saw_absent_chunk
    if which == "label":
        assert saw_missing_shard


@pytest.mark.parametrize("which", ["image", "label"])
def test_zarr_python_writes_the_same_absent_chunks_and_bytes(written, which, tmp_path):
    case, vurl, row = written
    group = row.image_path if which == "image" else row.path
    data = case.image if which == "image" else case.label
    src = zarr.open_array(str(vurl / group / ARRAY), mode="r")
    ref = zarr.create_array(
        str(tmp_path / "ref"),
        shape=src.shape,
        dtype=src.dtype,
        chunks=src.chunks,
        shards={"shape": src.shards, "index_location": "start"},
        compressors=src.compressors,
        fill_value=src.fill_value,
        config={"write_empty_chunks": False},
    )
    ref[...] = data
    meta = parse_array_meta(json.loads((vurl / metadata_path(f"{group}/{ARRAY}")).read_text()), where=which)
    assert parse_array_meta(json.loads((tmp_path / "ref" / "zarr.json").read_text()), where="zarr") == meta
    ours = _objects(vurl / group / ARRAY, meta, data)
    theirs = _objects(tmp_path / "ref", meta, data)
    assert [c for c, b in ours.items() if b is None] == [c for c, b in theirs.items() if b is None]
    for coords, blob in ours.items():
        if blob is None:
            continue
        a = parse_shard_index(meta, blob[: meta.index_nbytes], what="ours")
        b = parse_shard_index(meta, theirs[coords][: meta.index_nbytes], what="zarr")  # type: ignore[index]
        np.testing.assert_array_equal(a.absent(), b.absent())
        sa, ea, _ = a.byte_ranges(np.arange(a.n_chunks))
        sb, eb, _ = b.byte_ranges(np.arange(b.n_chunks))
        for k in np.flatnonzero(~a.absent()):
            assert blob[sa[k] : ea[k]] == theirs[coords][sb[k] : eb[k]]  # type: ignore[index]


def test_index_bytes_round_trip_and_damage_is_named():
    index = ShardIndex.empty(4)
    index.set_chunk(1, 68, 10)
    index.set_chunk(3, 78, 5)
    blob = index.to_bytes()
    assert len(blob) == ShardIndex.nbytes(4) == 16 * 4 + 4
    back = ShardIndex.from_bytes(blob, 4, what="s")
    np.testing.assert_array_equal(back.entries(), index.entries())
    assert back.entries()[[0, 2]].tolist() == [[ABSENT, ABSENT]] * 2
    assert back.entries()[[1, 3]].tolist() == [[68, 10], [78, 5]]
    np.testing.assert_array_equal(back.absent(), [True, False, True, False])
    starts, ends, present = back.byte_ranges(np.array([3, 0, 1]))
    assert (starts, ends, present) == (
        [78, 0, 68],
        [83, 0, 78],
        [True, False, True],
    )
    no_crc = ShardIndex.from_bytes(index.to_bytes(crc=False), 4, crc=False, what="s")
    np.testing.assert_array_equal(no_crc.entries(), index.entries())
    with pytest.raises(CorruptChunkError, match=r"^s shard index: crc32c mismatch"):
        ShardIndex.from_bytes(blob[:5] + bytes([blob[5] ^ 1]) + blob[6:], 4, what="s")
    with pytest.raises(CorruptChunkError, match=r"^s: shard index has 67 bytes, expected 68"):
        ShardIndex.from_bytes(blob[:-1], 4, what="s")
    with pytest.raises(ValueError, match="int64 starts and ends"):
        ShardIndex(np.zeros(4, dtype=np.uint64), np.zeros(4, dtype=np.int64), np.zeros(4, dtype=bool))

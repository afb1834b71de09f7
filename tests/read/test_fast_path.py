"""The per-patch hot path: scratch-buffer decoding, vectorised planning, checksums, fetch-ahead."""

import os
import shutil
import threading

import crc32c
import fsspec
import numpy as np
import pytest
from damage import first_image_chunk, flip_byte

from hcc_shards.errors import CorruptChunkError
from hcc_shards.read import IMAGE_PAD, LABEL_PAD, PatchStream, RandomPatches, open_dataset
from hcc_shards.read.array import FetchedRegions

pytestmark = pytest.mark.reader_env

VERSION = "blosc0000001"


def _expected(case, start, stop, pad):
    """numpy oracle: the region of ``case`` with ``pad`` outside the volume."""
    start, stop = np.asarray(start), np.asarray(stop)
    out = np.full(stop - start, pad, dtype=case.dtype)
    lo, hi = np.maximum(start, 0), np.minimum(stop, case.shape)
    if np.all(hi > lo):
        src = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        dst = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
        out[dst] = case[src]
    return out


def test_random_regions_equal_numpy(mini_blosc_root, mini_root, mini_cases):
    """Regions across shard borders, past every edge and inside one chunk, both codecs, many times
    over (the scratch buffer is reused from region to region)."""
    rng = np.random.default_rng(7)
    for root in (mini_blosc_root, mini_root):
        ds = open_dataset(root)
        for _ in range(60):
            mc = mini_cases[int(rng.integers(len(mini_cases)))]
            size = rng.integers(1, 30, 3)
            start = [int(rng.integers(-8, n)) for n in mc.image.shape]
            stop = [s + int(k) for s, k in zip(start, size, strict=True)]
            image, label = ds.case(mc.case_id).read_region(start, stop)
            np.testing.assert_array_equal(image, _expected(mc.image, start, stop, IMAGE_PAD))
            np.testing.assert_array_equal(label, _expected(mc.label, start, stop, LABEL_PAD))


def _chunk0(root, case):
    return first_image_chunk(root, VERSION, case.case_id, case.image.meta.index_nbytes)


def test_corrupted_blosc_chunk_names_the_case(tmp_path, mini_blosc_root):
    root = str(tmp_path / "copy")
    shutil.copytree(mini_blosc_root, root)
    case = open_dataset(root).case("A")
    shard, offset, _ = _chunk0(root, case)
    flip_byte(shard, offset + 20)
    with pytest.raises(CorruptChunkError, match=r"case 'A' image: chunk \(0, 0, 0\).*crc32c mismatch"):
        case.read_region((0, 0, 0), (4, 8, 8))


def test_undecodable_blosc_chunk_with_a_valid_checksum_names_the_case(tmp_path, mini_blosc_root):
    root = str(tmp_path / "copy")
    shutil.copytree(mini_blosc_root, root)
    case = open_dataset(root).case("A")
    shard, offset, nbytes = _chunk0(root, case)
    garbage = bytes(range(256)) * ((nbytes - 4) // 256 + 1)
    body = garbage[: nbytes - 4]
    with open(shard, "r+b") as f:
        f.seek(offset)
        f.write(body + crc32c.crc32c(body).to_bytes(4, "little"))
    with pytest.raises(CorruptChunkError, match=r"case 'A' image: chunk \(0, 0, 0\).*cannot decompress"):
        case.read_region((0, 0, 0), (4, 8, 8))


@pytest.fixture()
def memory_root(mini_blosc_root):
    """The blosc dataset on fsspec's in-memory filesystem: an object store as far as the reader knows."""
    fs = fsspec.filesystem("memory")
    root = f"/fastpath-{os.getpid()}"
    fs.put(mini_blosc_root.rstrip("/") + "/", root, recursive=True)
    yield f"memory://{root}"
    fs.rm(root, recursive=True)


def test_fetch_ahead_yields_the_same_and_decodes_in_the_consuming_thread(
    memory_root, mini_blosc_root, monkeypatch
):
    remote = open_dataset(memory_root)
    assert not remote.store.is_local
    sampler = RandomPatches((8, 24, 24), samples_per_epoch=12)
    decoded_in = set()
    assemble = FetchedRegions.assemble

    def spy(self):
        decoded_in.add(threading.get_ident())
        return assemble(self)

    monkeypatch.setattr(FetchedRegions, "assemble", spy)
    ahead = list(PatchStream(remote, sampler, seed=5, threads=0, fetch_ahead=2))
    assert decoded_in == {threading.get_ident()}
    serial = list(PatchStream(open_dataset(memory_root), sampler, seed=5, threads=0, fetch_ahead=0))
    local = list(PatchStream(open_dataset(mini_blosc_root), sampler, seed=5, threads=0))
    assert len(ahead) == len(serial) == len(local) == 12
    for a, b, c in zip(ahead, serial, local, strict=True):
        assert a.spec == b.spec == c.spec
        np.testing.assert_array_equal(a.image, c.image)
        np.testing.assert_array_equal(b.image, c.image)
        np.testing.assert_array_equal(a.label, c.label)


def test_fetch_ahead_stream_can_stop_early_and_resume(memory_root):
    ds = open_dataset(memory_root)
    sampler = RandomPatches((8, 24, 24), samples_per_epoch=10)
    full = [p.spec for p in PatchStream(ds, sampler, seed=2, threads=0)]
    stream = PatchStream(ds, sampler, seed=2, threads=0)
    first = []
    for patch in stream:
        first.append(patch.spec)
        if len(first) == 4:
            break
    state = stream.state_dict()
    again = PatchStream(ds, sampler, seed=2, threads=0)
    again.load_state_dict(state)
    assert first + [p.spec for p in again] == full


def test_fetch_ahead_must_not_be_negative(mini_root):
    with pytest.raises(ValueError, match="fetch_ahead"):
        PatchStream(open_dataset(mini_root), RandomPatches((4, 4, 4)), fetch_ahead=-1)

"""One storage test suite, run over every backend the product supports.

``StorageSuite`` holds the tests; each backend subclass only says how to make a fresh root URL
and its storage options. The operations are the ones hcc-shards relies on: whole-object write and
read, byte ranges (the reader's partial shard reads), listing (the build's input listing), size
and existence checks, write-then-rename (completion markers), recursive delete, and a sharded
Zarr v3 array through zarr's fsspec store.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from hcc_shards import storage


class StorageSuite:
    """Tests shared by every backend. Subclasses provide the ``backend`` fixture."""

    xfail_suffix_range: str = ""
    """Why this backend cannot serve a suffix range, when it cannot (a known emulator gap)."""

    @pytest.fixture
    def backend(self) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    @pytest.fixture
    def root(self, backend: tuple[str, dict[str, Any]]) -> str:
        base, _ = backend
        return storage.join(base, f"suite-{uuid.uuid4().hex[:12]}")

    @pytest.fixture
    def options(self, backend: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        return backend[1]

    def _fs(self, url: str, options: dict[str, Any]):
        fs, path = storage.filesystem(url, options)
        fs.invalidate_cache()
        return fs, path

    def test_write_read_roundtrip(self, root: str, options: dict[str, Any]) -> None:
        fs, base = self._fs(root, options)
        payload = bytes(range(256)) * 40 + b"\x00\x00tail"
        fs.pipe_file(f"{base}/a/b/blob.bin", payload)
        assert fs.cat_file(f"{base}/a/b/blob.bin") == payload
        with fs.open(f"{base}/a/b/blob.bin", "rb") as f:
            assert f.read() == payload
        assert fs.size(f"{base}/a/b/blob.bin") == len(payload)
        assert fs.exists(f"{base}/a/b/blob.bin")
        assert not fs.exists(f"{base}/a/b/missing.bin")
        with pytest.raises(FileNotFoundError):
            fs.cat_file(f"{base}/a/b/missing.bin")

    def test_put_objects_writes_a_batch_under_new_prefixes(self, root: str, options: dict[str, Any]) -> None:
        fs, base = self._fs(root, options)
        objects = {
            f"{base}/case/{k}/zarr.json": f'{{"k": "{k}"}}'.encode() for k in ("0", "labels/seg/0", "fg/a")
        }
        objects[f"{base}/case/0/c/0/0/0"] = bytes(range(256)) * 100
        storage.put_objects(fs, objects)
        fs.invalidate_cache()
        assert {p: fs.cat_file(p) for p in objects} == objects
        storage.put_objects(fs, {})

    def test_overwrite_replaces_whole_object(self, root: str, options: dict[str, Any]) -> None:
        fs, base = self._fs(root, options)
        fs.pipe_file(f"{base}/x.json", b'{"long": "first version of the object"}')
        fs.pipe_file(f"{base}/x.json", b'{"v": 2}')
        fs.invalidate_cache()
        assert fs.cat_file(f"{base}/x.json") == b'{"v": 2}'

    def test_streamed_write_larger_than_one_part(self, root: str, options: dict[str, Any]) -> None:
        # 6 MiB crosses S3's 5 MiB multipart threshold and gcsfs's resumable-upload block size.
        fs, base = self._fs(root, options)
        payload = np.random.default_rng(0).integers(0, 256, size=6 * 1024 * 1024, dtype=np.uint8).tobytes()
        with fs.open(f"{base}/big.bin", "wb", block_size=5 * 1024 * 1024) as f:
            f.write(payload[:1000])
            f.write(payload[1000:])
        assert fs.size(f"{base}/big.bin") == len(payload)
        assert (
            fs.cat_file(f"{base}/big.bin", start=5 * 1024 * 1024 - 10, end=5 * 1024 * 1024 + 10)
            == (payload[5 * 1024 * 1024 - 10 : 5 * 1024 * 1024 + 10])
        )

    def test_byte_ranges(self, root: str, options: dict[str, Any]) -> None:
        fs, base = self._fs(root, options)
        payload = bytes(range(200))
        fs.pipe_file(f"{base}/r.bin", payload)
        assert fs.cat_file(f"{base}/r.bin", start=10, end=20) == payload[10:20]
        assert fs.cat_file(f"{base}/r.bin", start=150) == payload[150:]
        assert fs.cat_file(f"{base}/r.bin", start=0, end=1) == payload[:1]
        got = fs.cat_ranges([f"{base}/r.bin"] * 3, [0, 50, 199], [5, 60, 200])
        assert got == [payload[0:5], payload[50:60], payload[199:200]]
        with fs.open(f"{base}/r.bin", "rb") as f:
            f.seek(100)
            assert f.read(7) == payload[100:107]

    def test_suffix_range(self, root: str, options: dict[str, Any], request: pytest.FixtureRequest) -> None:
        if self.xfail_suffix_range:
            request.applymarker(pytest.mark.xfail(reason=self.xfail_suffix_range, strict=True))
        fs, base = self._fs(root, options)
        payload = bytes(range(100))
        fs.pipe_file(f"{base}/s.bin", payload)
        assert fs.cat_file(f"{base}/s.bin", start=-16) == payload[-16:]

    def test_listing(self, root: str, options: dict[str, Any]) -> None:
        fs, base = self._fs(root, options)
        names = ["p1/s1/1.dcm", "p1/s1/2.dcm", "p1/s2/1.dcm", "p2/s9/1.dcm", "top.txt"]
        for i, name in enumerate(names):
            fs.pipe_file(f"{base}/{name}", b"x" * (i + 1))
        fs.invalidate_cache()
        found = fs.find(base, detail=True)
        rel = {p[len(base) + 1 :]: info["size"] for p, info in found.items()}
        assert rel == {name: i + 1 for i, name in enumerate(names)}
        top = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))
        assert top == ["p1", "p2", "top.txt"]
        dirs = {
            info["name"].rstrip("/").rsplit("/", 1)[-1]: info["type"] for info in fs.ls(base, detail=True)
        }
        assert dirs == {"p1": "directory", "p2": "directory", "top.txt": "file"}
        assert sorted(fs.find(f"{base}/p1")) == sorted(f"{base}/{n}" for n in names[:3])
        assert fs.find(f"{base}/nothing-here") == []

    def test_write_then_rename_is_all_or_nothing(self, root: str, options: dict[str, Any]) -> None:
        fs, base = self._fs(root, options)
        final = f"{base}/case/_COMPLETE.json"
        tmp = f"{base}/case/.tmp-{uuid.uuid4().hex}"
        fs.pipe_file(tmp, b'{"done": true}')
        assert not fs.exists(final)
        fs.mv(tmp, final)
        fs.invalidate_cache()
        assert fs.cat_file(final) == b'{"done": true}'
        assert not fs.exists(tmp)
        assert [p.rsplit("/", 1)[-1] for p in fs.find(f"{base}/case")] == ["_COMPLETE.json"]

    def test_recursive_delete(self, root: str, options: dict[str, Any]) -> None:
        fs, base = self._fs(root, options)
        for name in ("d/1", "d/e/2", "keep"):
            fs.pipe_file(f"{base}/{name}", b"1")
        fs.rm(f"{base}/d", recursive=True)
        fs.invalidate_cache()
        assert [p.rsplit("/", 1)[-1] for p in fs.find(base)] == ["keep"]

    def test_sharded_zarr_roundtrip(self, root: str, options: dict[str, Any]) -> None:
        import zarr
        from zarr.codecs import BytesCodec, ShardingCodec, ZstdCodec
        from zarr.storage import FsspecStore

        url = storage.join(root, "case.zarr")
        store = FsspecStore.from_url(url, storage_options=options or None)
        data = np.arange(20 * 30 * 40, dtype=np.int16).reshape(20, 30, 40) - 1024
        arr = zarr.create_array(
            store,
            name="0",
            shape=data.shape,
            dtype="int16",
            chunks=(8, 16, 16),
            # The index at the start: its byte range is known without the object's size, and the GCS
            # emulator ignores the suffix range an index at the end needs (FORMAT.md stores it first).
            shards={"shape": (16, 32, 32), "index_location": "start"},
            fill_value=-1024,
            compressors=[ZstdCodec(level=3)],
            zarr_format=3,
        )
        arr[...] = data
        codecs = arr.metadata.codecs
        assert isinstance(codecs[0], ShardingCodec)
        assert codecs[0].index_location == "start"
        assert any(isinstance(c, BytesCodec) for c in codecs[0].codecs)

        reread = zarr.open_array(
            FsspecStore.from_url(url, storage_options=options or None, read_only=True), path="0"
        )
        np.testing.assert_array_equal(reread[...], data)
        np.testing.assert_array_equal(reread[3:11, 5:7, 33:40], data[3:11, 5:7, 33:40])
        fs, base = self._fs(url, options)
        shard_keys = sorted(p[len(base) + 1 :] for p in fs.find(f"{base}/0/c"))
        assert shard_keys == [f"0/c/{z}/{y}/{x}" for z in range(2) for y in range(1) for x in range(2)]


class TestLocal(StorageSuite):
    @pytest.fixture
    def backend(self, tmp_path) -> tuple[str, dict[str, Any]]:
        # Object stores have no directories; a local filesystem needs parents made on write.
        return str(tmp_path), {"auto_mkdir": True}


class TestMemory(StorageSuite):
    @pytest.fixture
    def backend(self) -> tuple[str, dict[str, Any]]:
        return f"memory://hcc-suite-{uuid.uuid4().hex[:8]}", {}


class TestGCSEmulator(StorageSuite):
    xfail_suffix_range = "gcp-storage-emulator ignores 'bytes=-N' and returns the whole object"

    @pytest.fixture
    def backend(self, gcs) -> tuple[str, dict[str, Any]]:
        return gcs.make_bucket("hcc-suite"), gcs.storage_options

    @pytest.mark.soak
    def test_write_then_rename_is_all_or_nothing(self, root: str, options: dict[str, Any]) -> None:
        # gcsfs renames with the moveTo API first; the emulator answers 501 and gcsfs retries for
        # about 33 s before falling back to copy + delete. Correct, but too slow for CI.
        super().test_write_then_rename_is_all_or_nothing(root, options)


class TestS3Emulator(StorageSuite):
    @pytest.fixture
    def backend(self, s3) -> tuple[str, dict[str, Any]]:
        return s3.make_bucket("hcc-suite"), s3.storage_options

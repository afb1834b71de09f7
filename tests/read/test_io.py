"""Byte-range I/O: only touched chunks are read, retries, the disk cache, fork safety."""

import multiprocessing
import os

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from hcc_shards.read import CacheSettings, IOSettings, open_dataset
from hcc_shards.read.cache import DiskCache
from hcc_shards.read.io import ByteStore, is_transient

pytestmark = pytest.mark.reader_env


class FlakyFileSystem(MemoryFileSystem):
    """An in-memory filesystem whose range reads fail a set number of times first."""

    protocol = "flaky"
    failures: list[BaseException] = []  # noqa: RUF012  (class-level, like MemoryFileSystem.store)
    calls = 0

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("flaky://"))

    def cat_ranges(self, paths, starts, ends, max_gap=None, on_error="return", **kwargs):
        FlakyFileSystem.calls += 1
        if FlakyFileSystem.failures:
            raise FlakyFileSystem.failures.pop(0)
        return super().cat_ranges(paths, starts, ends, max_gap=max_gap, on_error=on_error, **kwargs)


fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)


@pytest.fixture(scope="module")
def remote_root(mini_root):
    fs = fsspec.filesystem("memory")
    fs.put(mini_root + "/", "/mini-remote", recursive=True)
    return "flaky:///mini-remote"


def test_only_touched_chunks_are_read(mini_root):
    ds = open_dataset(mini_root)
    case = ds.case("A")
    _ = case.image, case.label
    store = ds.store
    before = store.stats.bytes
    case.read_region((0, 0, 0), (8, 16, 16))  # exactly one inner chunk of each array
    read = store.stats.bytes - before
    index = case.image.meta.index_nbytes + case.label.meta.index_nbytes
    shard_file = os.path.getsize(f"{mini_root}/versions/0123456789ab/cases/A/0/c/0/0/0")
    assert read < index + shard_file / 4, f"read {read} bytes for one chunk (shard is {shard_file})"
    before = store.stats.bytes
    case.read_region((0, 0, 0), (8, 16, 16))  # shard indexes are cached now
    assert store.stats.bytes - before < read - index + 1


def test_transient_errors_are_retried(remote_root, mini_cases):
    FlakyFileSystem.failures = [ConnectionError("reset by peer"), TimeoutError("slow")]
    sleeps = []
    settings = IOSettings(retries=3, backoff_s=0.01)
    ds = open_dataset(remote_root, io_settings=settings)
    ds.store._sleep = sleeps.append
    image = ds.case("B").image[...]
    np.testing.assert_array_equal(image, mini_cases[1].image)
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.5  # backoff grows (with jitter)
    assert ds.store.stats.retries == 2


def test_permanent_errors_and_exhausted_retries_raise(remote_root):
    FlakyFileSystem.failures = [PermissionError("denied")]
    ds = open_dataset(remote_root, io_settings=IOSettings(retries=3, backoff_s=0))
    with pytest.raises(PermissionError, match="denied"):
        ds.case("A").image[0, 0, 0]
    FlakyFileSystem.failures = [ConnectionError("x")] * 3
    ds = open_dataset(remote_root, io_settings=IOSettings(retries=2, backoff_s=0))
    with pytest.raises(ConnectionError):
        ds.case("C").label[0, 0, 0]
    FlakyFileSystem.failures = []
    assert not is_transient(FileNotFoundError()) and is_transient(OSError(104, "reset"))


def test_disk_cache_serves_repeats_and_stays_under_its_limit(tmp_path, remote_root, mini_cases):
    FlakyFileSystem.failures = []
    roomy = IOSettings(cache=CacheSettings(str(tmp_path / "roomy"), max_bytes=10_000_000))
    np.testing.assert_array_equal(
        open_dataset(remote_root, io_settings=roomy).case("A").image[...], mini_cases[0].image
    )
    calls = FlakyFileSystem.calls
    again = open_dataset(remote_root, io_settings=roomy).case("A")
    np.testing.assert_array_equal(again.image[0:4, 0:8, 0:8], mini_cases[0].image[0:4, 0:8, 0:8])
    assert FlakyFileSystem.calls == calls, "a repeated read went to storage instead of the cache"

    limit = 30_000
    tight = IOSettings(cache=CacheSettings(str(tmp_path / "tight"), max_bytes=limit))
    ds = open_dataset(remote_root, io_settings=tight)
    for case in ds:
        case.image[...]
    assert 0 < DiskCache(tight.cache).size_bytes() <= limit
    assert DiskCache(roomy.cache).size_bytes() > limit


def _child_read(store_and_region):
    ds, region = store_and_region
    image, _ = ds.case("B").read_region(*region)
    return image, ds.store._pid == os.getpid()


def test_fork_safe_reads_in_child_processes(remote_root, mini_cases):
    FlakyFileSystem.failures = []
    ds = open_dataset(remote_root)
    ds.case("B").image[0, 0, 0]  # the parent made its client and caches
    ctx = multiprocessing.get_context("fork")
    region = ((1, 2, 3), (9, 30, 33))
    with ctx.Pool(2) as pool:
        results = pool.map(_child_read, [(ds, region)] * 2)
    for image, fresh in results:
        assert fresh, "the child reused the parent's storage client"
        np.testing.assert_array_equal(image, mini_cases[1].image[1:9, 2:30, 3:33])


def test_store_pickles_without_clients():
    import pickle

    store = ByteStore("memory:///x", {"skip_instance_cache": True})
    _ = store.fs
    clone = pickle.loads(pickle.dumps(store))
    assert clone._fs_obj is None and clone.root_url == "memory:///x"


def test_pread_and_mmap_read_the_same(mini_root, mini_cases):
    for use_mmap in (True, False):
        ds = open_dataset(mini_root, io_settings=IOSettings(use_mmap=use_mmap))
        image, label = ds.case("A").read_region((3, -2, 5), (17, 30, 44))
        expected = np.full((14, 32, 39), -1024, np.int16)
        expected[:, 2:, :35] = mini_cases[0].image[3:17, 0:30, 5:40]
        np.testing.assert_array_equal(image, expected)
        assert label.shape == (14, 32, 39) and ds.store.stats.requests > 0


def test_settings_are_checked():
    with pytest.raises(
        ValueError, match="max_concurrency and max_batches_in_flight must be >= 1, got 0 and 4"
    ):
        IOSettings(max_concurrency=0)
    with pytest.raises(ValueError, match="max_bytes must be positive, got 0"):
        CacheSettings("/tmp/x", 0)


@pytest.mark.parametrize("use_mmap", [True, False])
def test_open_files_stay_bounded(monkeypatch, mini_root, mini_cases, use_mmap):
    import hcc_shards.read.io as io_module

    monkeypatch.setattr(io_module, "_MAX_OPEN", 2)
    ds = open_dataset(mini_root, io_settings=IOSettings(use_mmap=use_mmap))
    for _ in range(2):
        for src in mini_cases:
            case = ds.case(src.case_id)
            np.testing.assert_array_equal(case.image[...], src.image)
            np.testing.assert_array_equal(case.label[...], src.label)
    assert len(ds.store._maps) <= 2 and len(ds.store._fds) <= 2


@pytest.mark.parametrize("remote", [False, True])
def test_list_names_sees_objects_put_by_another_client(tmp_path, remote):
    """Files directly under a folder, sorted; none for a missing folder; a new object at once."""
    if remote:
        fs = fsspec.filesystem("memory")
        root = "memory://list-names-test"
        fs.pipe({"/list-names-test/p/b.parquet": b"1", "/list-names-test/p/sub/c.json": b"2"})
    else:
        root = str(tmp_path)
        (tmp_path / "p" / "sub").mkdir(parents=True)
        (tmp_path / "p" / "b.parquet").write_bytes(b"1")
    store = ByteStore(root)
    assert store.list_names("p") == ["b.parquet"]
    assert store.list_names("absent") == []
    if remote:
        fsspec.filesystem("memory").pipe_file("/list-names-test/p/a.parquet", b"3")
    else:
        (tmp_path / "p" / "a.parquet").write_bytes(b"3")
    assert store.list_names("p") == ["a.parquet", "b.parquet"]

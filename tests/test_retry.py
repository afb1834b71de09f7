"""The one retry policy: which errors are transient, how many calls, which waits; the reader retries."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from hcc_shards.retry import (
    CASE_RETRIES,
    STORAGE_RETRIES,
    RetryPolicy,
    call_with_retries,
    http_status,
    is_storage_error,
    is_transient,
    retrying,
)

sys.path.insert(0, str(Path(__file__).parent / "read"))
from miniwriter import MiniCase, MiniLayout, phantom, write_dataset


class StatusError(Exception):
    """An error that carries an HTTP status the way aiohttp's and gcsfs's errors do."""

    def __init__(self, status: int | str, attr: str = "status") -> None:
        super().__init__(f"HTTP {status}")
        setattr(self, attr, status)


# -- classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("x"),
        ConnectionResetError("reset"),
        OSError(errno.ECONNRESET, "reset"),  # OSError() makes it a ConnectionResetError
        TimeoutError("slow"),
        OSError(errno.EBUSY, "slow down"),
        BlockingIOError(errno.EAGAIN, "again"),
        StatusError(503),
        StatusError(429, "status_code"),
        StatusError("500", "code"),
        StatusError(408, "code"),
        StatusError(502),
        StatusError(504),
    ],
    ids=repr,
)
def test_transient_errors(exc: BaseException) -> None:
    assert is_transient(exc)
    assert is_storage_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError("gone"),
        PermissionError("denied"),
        IsADirectoryError("dir"),
        NotADirectoryError("file"),
        ValueError("bad"),
        OSError("truncated file"),  # pydicom's damaged-file error: not storage
        OSError(errno.EINVAL, "invalid"),
        StatusError(400),
        StatusError(403),
        StatusError(404),
        StatusError(501),
        StatusError(True, "code"),  # a bool is no status
        KeyError("k"),
    ],
    ids=repr,
)
def test_permanent_errors(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_a_status_decides_over_the_class_and_a_cause_is_followed() -> None:
    class ClientConnectionError(Exception):  # named like aiohttp's: transient by name
        pass

    assert is_transient(ClientConnectionError("dropped"))
    refused = ClientConnectionError("refused")
    refused.status = 403  # type: ignore[attr-defined]
    assert not is_transient(refused)
    wrapped = OSError(errno.EIO, "backend trouble")
    wrapped.__cause__ = StatusError(503)
    assert is_transient(wrapped)
    wrapped.__cause__ = StatusError(404)
    assert not is_transient(wrapped)
    assert not is_storage_error(ValueError("x")) and is_storage_error(PermissionError("x"))


def test_botocore_and_s3fs_errors() -> None:
    botocore = pytest.importorskip("botocore.exceptions")
    s3errors = pytest.importorskip("s3fs.errors")

    def client_error(code: str, status: int) -> Exception:
        body = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return botocore.ClientError(body, "GetObject")

    slow = client_error("SlowDown", 503)
    assert http_status(slow) == 503 and is_transient(slow)
    assert is_transient(client_error("503", 503))
    assert is_transient(client_error("InternalError", 500))
    assert is_transient(client_error("BadGateway", 502))
    assert not is_transient(client_error("AccessDenied", 403))
    assert not is_transient(client_error("NoSuchKey", 404))
    assert is_transient(botocore.EndpointConnectionError(endpoint_url="http://s3"))
    assert is_transient(botocore.ReadTimeoutError(endpoint_url="http://s3"))
    assert is_transient(botocore.ConnectTimeoutError(endpoint_url="http://s3"))
    assert not is_transient(botocore.NoCredentialsError())
    # s3fs turns ClientErrors into OSErrors (raised from the original).
    assert is_transient(s3errors.translate_boto_error(slow))
    assert is_transient(s3errors.translate_boto_error(client_error("InternalError", 500)))
    assert is_transient(s3errors.translate_boto_error(client_error("Unheard", 502)))
    assert isinstance(s3errors.translate_boto_error(client_error("AccessDenied", 403)), PermissionError)
    assert not is_transient(s3errors.translate_boto_error(client_error("AccessDenied", 403)))
    assert not is_transient(s3errors.translate_boto_error(client_error("Unheard", 400)))


def test_gcsfs_aiohttp_requests_errors() -> None:
    gcsretry = pytest.importorskip("gcsfs.retry")
    aiohttp = pytest.importorskip("aiohttp")
    requests = pytest.importorskip("requests")

    assert is_transient(gcsretry.HttpError({"code": 503, "message": "backend error"}))
    assert is_transient(gcsretry.HttpError({"code": 429, "message": "rate"}))
    assert not is_transient(gcsretry.HttpError({"code": 400, "message": "bad"}))
    for status, transient in ((502, True), (403, False), (404, False)):
        with pytest.raises(Exception) as caught:
            gcsretry.validate_response(status, b"", "bucket/key")
        assert is_transient(caught.value) is transient, (status, caught.value)
    assert is_transient(aiohttp.ServerDisconnectedError())
    assert is_transient(aiohttp.ClientPayloadError("cut"))
    assert is_transient(aiohttp.ClientResponseError(None, (), status=503))  # type: ignore[arg-type]
    assert not is_transient(aiohttp.ClientResponseError(None, (), status=404))  # type: ignore[arg-type]
    assert is_transient(requests.exceptions.ConnectionError("refused"))
    assert is_transient(requests.exceptions.ReadTimeout("slow"))
    assert is_transient(fsspec.exceptions.FSTimeoutError())


# -- the policy --------------------------------------------------------------------------------


class Failing:
    """Fails its first ``failures`` calls with the given errors, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_transient_errors_are_retried_until_success() -> None:
    fn = Failing(ConnectionResetError("a"), TimeoutError("b"), StatusError(503))
    sleeps: list[float] = []
    retried: list[int] = []
    assert call_with_retries(fn, sleep=sleeps.append, on_retry=lambda e, n: retried.append(n)) == "ok"
    assert fn.calls == 4 and retried == [1, 2, 3] and len(sleeps) == 3


def test_attempts_are_counted_and_the_last_error_is_raised() -> None:
    last = TimeoutError("third")
    fn = Failing(ConnectionError("first"), TimeoutError("second"), last, ConnectionError("never"))
    sleeps: list[float] = []
    with pytest.raises(TimeoutError) as caught:
        call_with_retries(fn, RetryPolicy(attempts=3), sleep=sleeps.append)
    assert caught.value is last and fn.calls == 3 and len(sleeps) == 2
    once = Failing(ConnectionError("x"))
    with pytest.raises(ConnectionError):
        call_with_retries(once, RetryPolicy(attempts=1), sleep=sleeps.append)
    assert once.calls == 1


def test_permanent_errors_are_not_retried() -> None:
    for error in (FileNotFoundError("gone"), PermissionError("no"), StatusError(403), ValueError("bug")):
        fn = Failing(error)
        sleeps: list[float] = []
        with pytest.raises(type(error)):
            call_with_retries(fn, sleep=sleeps.append)
        assert fn.calls == 1 and sleeps == []
    fn = Failing(ConnectionError("x"), FileNotFoundError("gone"))
    with pytest.raises(FileNotFoundError):
        call_with_retries(fn, sleep=lambda s: None)
    assert fn.calls == 2


def test_waits_double_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(attempts=6, base_delay_s=0.1, max_delay_s=0.5, jitter=0.0)
    sleeps: list[float] = []
    with pytest.raises(ConnectionError):
        call_with_retries(Failing(*[ConnectionError()] * 6), policy, sleep=sleeps.append)
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_stays_in_range_and_a_seed_repeats_it() -> None:
    policy = RetryPolicy(attempts=8, base_delay_s=0.1, max_delay_s=1.0, jitter=0.5, seed=7)

    def waits(p: RetryPolicy) -> list[float]:
        sleeps: list[float] = []
        with pytest.raises(TimeoutError):
            call_with_retries(Failing(*[TimeoutError()] * 8), p, sleep=sleeps.append)
        return sleeps

    first = waits(policy)
    assert first == waits(policy)  # seeded: the same waits every call
    assert first != waits(RetryPolicy(attempts=8, base_delay_s=0.1, max_delay_s=1.0, seed=8))
    for n, wait in enumerate(first, start=1):
        full = min(1.0, 0.1 * 2 ** (n - 1))
        assert 0.5 * full <= wait <= full
    assert len(set(first)) == len(first)


def test_policies_are_checked_and_the_named_ones_keep_their_counts() -> None:
    assert STORAGE_RETRIES.attempts == 8 and CASE_RETRIES.attempts == 3
    for bad in ({"attempts": 0}, {"base_delay_s": -1.0}, {"jitter": 1.5}):
        with pytest.raises(ValueError, match="RetryPolicy"):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_retrying_decorator() -> None:
    fn = Failing(ConnectionError("x"))

    @retrying(RetryPolicy(attempts=2), sleep=lambda s: None)
    def call(suffix: str) -> str:
        return fn() + suffix

    assert call("!") == "ok!" and fn.calls == 2
    assert call.__name__ == "call"


# -- the reader, through its real I/O path -------------------------------------------------------


class DroppingFileSystem(MemoryFileSystem):
    """An in-memory filesystem whose next ``drops`` object reads fail with a reset connection."""

    protocol = "dropping"
    drops = 0
    reads = 0

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.removeprefix("dropping://"))

    def cat_file(self, path, start=None, end=None, **kwargs):
        DroppingFileSystem.reads += 1
        if DroppingFileSystem.drops > 0:
            DroppingFileSystem.drops -= 1
            raise ConnectionResetError(f"{path}: connection reset by peer")
        return super().cat_file(path, start=start, end=end, **kwargs)


fsspec.register_implementation("dropping", DroppingFileSystem, clobber=True)


@pytest.fixture(scope="module")
def dropping_case(tmp_path_factory) -> tuple[str, MiniCase]:
    image, label = phantom((10, 24, 20), seed=3)
    case = MiniCase("R", image, label, spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), split="train")
    root = str(tmp_path_factory.mktemp("retry_reader"))
    write_dataset(root, [case], MiniLayout())
    fsspec.filesystem("memory").put(root + "/", "/retry-remote", recursive=True)
    return "dropping:///retry-remote", case


def test_the_reader_retries_dropped_reads(dropping_case) -> None:
    from hcc_shards.read import IOSettings, open_dataset

    url, case = dropping_case
    sleeps: list[float] = []
    DroppingFileSystem.drops = 0
    ds = open_dataset(url, io_settings=IOSettings(retries=3, backoff_s=0.01))
    ds.store._sleep = sleeps.append
    DroppingFileSystem.drops = 2
    image = ds.case("R").image[...]
    np.testing.assert_array_equal(image, case.image)
    assert DroppingFileSystem.drops == 0
    # Both drops may fall in one batch of ranges, which is then fetched again once.
    assert 1 <= ds.store.stats.retries <= 2 and len(sleeps) == ds.store.stats.retries

    # More dropped reads in a row than the settings allow: the reset itself reaches the caller.
    ds = open_dataset(url, io_settings=IOSettings(retries=1, backoff_s=0.0))
    DroppingFileSystem.drops = 10
    try:
        with pytest.raises(ConnectionResetError, match="connection reset"):
            ds.case("R").label[...]
    finally:
        DroppingFileSystem.drops = 0

"""Which storage failures are worth another attempt, and how attempts are spaced.

One definition serves the build and the reader: :func:`is_transient` says whether an error may go
away when the call is made again; :class:`RetryPolicy` says how many calls are made and how long to
wait between them; :func:`call_with_retries` (or the :func:`retrying` decorator) applies both.

Transient: connection and timeout errors (``ConnectionError``, ``TimeoutError`` and their
subclasses, which include ``fsspec.FSTimeoutError`` and aiohttp's timeouts), the HTTP statuses 408,
429, 500, 502, 503 and 504, errors whose class is one of the connection and timeout errors of
aiohttp, botocore, urllib3 and requests (recognised by name, :data:`TRANSIENT_CLASS_NAMES`), the
errnos s3fs gives a throttled or failing service (``EBUSY``, ``EREMOTEIO``) and ``EAGAIN``, and
any error raised ``from`` a transient one (s3fs re-raises botocore errors that way). A missing
object, a denied permission and anything else are permanent. The status is read from the error,
never by importing the client libraries: ``status`` / ``status_code`` / ``code`` attributes (aiohttp,
requests, gcsfs) and ``response['Error']['Code']`` or ``response['ResponseMetadata']
['HTTPStatusCode']`` (botocore); an error that carries a status is decided by it alone.

Standard library only: the reader imports this module.
"""

from __future__ import annotations

import errno
import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "CASE_RETRIES",
    "PERMANENT_STORAGE_ERRORS",
    "STORAGE_RETRIES",
    "TRANSIENT_CLASS_NAMES",
    "TRANSIENT_HTTP_STATUSES",
    "RetryPolicy",
    "call_with_retries",
    "http_status",
    "is_storage_error",
    "is_transient",
    "retrying",
]

T = TypeVar("T")
P = ParamSpec("P")

TRANSIENT_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that a later identical request may not get (timeout, throttling, server trouble)."""
TRANSIENT_CLASS_NAMES = frozenset(
    {
        # requests (its ConnectionError is an IOError, not the builtin) and botocore's own ConnectionError
        "ConnectionError",
        "Timeout",
        "ChunkedEncodingError",
        # botocore
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "HTTPClientError",
        "IncompleteReadError",
        "ResponseStreamingError",
        # aiohttp
        "ClientConnectionError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        # urllib3, http.client
        "ProtocolError",
        "IncompleteRead",
    }
)
"""Class names (anywhere in an error's class hierarchy) of the client libraries' transient errors."""
TRANSIENT_ERROR_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable", "InternalError"}
)
"""botocore ``response['Error']['Code']`` names that mean a transient status."""
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, n) for n in ("EAGAIN", "EBUSY", "EREMOTEIO") if hasattr(errno, n)
)
PERMANENT_STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
"""Storage errors that another attempt cannot cure."""


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an error carries, or None (read from attributes, no client library imported)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):  # botocore ClientError
        code = (response.get("Error") or {}).get("Code")
        if isinstance(code, str) and code in TRANSIENT_ERROR_CODES:
            return 503
        for value in (code, (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")):
            status = _as_status(value)
            if status is not None:
                return status
    for attr in ("status", "status_code", "code"):
        status = _as_status(getattr(exc, attr, None))
        if status is not None:
            return status
    return None


def _as_status(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` may go away when the failed storage call is made again (see the module doc)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PERMANENT_STORAGE_ERRORS):
            return False
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        status = http_status(current)
        if status is not None:
            return status in TRANSIENT_HTTP_STATUSES
        if any(cls.__name__ in TRANSIENT_CLASS_NAMES for cls in type(current).__mro__):
            return True
        if isinstance(current, OSError) and current.errno in _TRANSIENT_ERRNOS:
            return True
        current = current.__cause__
    return False


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of storage (quarantined as ``storage_error``), not of the data."""
    return isinstance(exc, PERMANENT_STORAGE_ERRORS) or is_transient(exc)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a call that fails with a transient error is made, and how long to wait in between.

    Retry ``n`` (1 for the first) waits ``min(max_delay_s, base_delay_s * 2**(n - 1))`` scaled by a
    random factor in ``[1 - jitter, 1)``, so that many clients failing together do not come back
    together, and no wait exceeds ``max_delay_s``.
    """

    attempts: int = 8
    """Calls in all, the first included (1: no retry)."""
    base_delay_s: float = 0.02
    """Wait before the first retry; it doubles with each further retry."""
    max_delay_s: float = 2.0
    """Longest wait."""
    jitter: float = 0.5
    """Fraction of each wait that is random (0: waits are exact)."""
    seed: int | None = None
    """Seed of the jitter (each call then waits the same); None draws fresh randomness."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(
                f"RetryPolicy delays must be >= 0, got base {self.base_delay_s} and max {self.max_delay_s}"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be in [0, 1], got {self.jitter}")

    def delay_s(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry ``retry`` (1 for the first); ``rng`` draws the jitter."""
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        if self.jitter:
            delay *= 1.0 - self.jitter * (rng or random.Random(self.seed)).random()
        return delay


STORAGE_RETRIES = RetryPolicy()
"""One storage call of the build through a client that does not retry itself (8 calls, 20 ms to 2 s)."""
CASE_RETRIES = RetryPolicy(attempts=3, base_delay_s=0.5, max_delay_s=2.0)
"""All the reads of one case or series, again, at the build's case boundary (3 tries, waits under 0.5 s, 1 s)."""


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy = STORAGE_RETRIES,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """``fn()``, called again after each transient error, up to ``policy.attempts`` calls in all.

    A permanent error is raised at once; when the attempts are used up the last transient error is
    raised. ``on_retry(error, n)`` is told of retry ``n`` before its wait.
    """
    rng: random.Random | None = None
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= policy.attempts or not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(exc, attempt)
            if rng is None:  # made on the first failure only: the path without errors stays free
                rng = random.Random(policy.seed)
            sleep(policy.delay_s(attempt, rng))
    raise AssertionError("unreachable")  # pragma: no cover


def retrying(
    policy: RetryPolicy = STORAGE_RETRIES, *, sleep: Callable[[float], None] = time.sleep
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: every call of the function goes through :func:`call_with_retries` with ``policy``."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return call_with_retries(lambda: fn(*args, **kwargs), policy, sleep=sleep)

        return call

    return wrap

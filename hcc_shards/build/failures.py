"""How the build's stages turn an exception into a reason code, and retry a case's storage calls
(one policy, one idea of transient: :mod:`hcc_shards.retry`)."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import TypeVar

from hcc_shards.pseudonymize import Pseudonymizer
from hcc_shards.quarantine import Reason
from hcc_shards.retry import CASE_RETRIES, call_with_retries, is_storage_error

T = TypeVar("T")


def with_retries(fn: Callable[[], T]) -> T:
    """``fn()`` under the build's per-case retry policy (:data:`hcc_shards.retry.CASE_RETRIES`)."""
    return call_with_retries(fn, CASE_RETRIES)


def reason_of(exc: BaseException) -> Reason:
    """``storage_error`` for errors of the store, ``internal_error`` for anything else."""
    return Reason.STORAGE_ERROR if is_storage_error(exc) else Reason.INTERNAL_ERROR


def short_traceback(exc: BaseException, limit: int = 6) -> str:
    """The last frames of ``exc``'s traceback, for a record's details (bounded in size)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-limit))[-2000:]


@functools.lru_cache(maxsize=4)
def pseudonymizer(key: str) -> Pseudonymizer | None:
    """The pseudonymizer of a build's key (None without one); cached per worker process."""
    return Pseudonymizer(key) if key else None

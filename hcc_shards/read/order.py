"""Who reads which position: the split of an epoch across ranks and workers, and the resume state.

The rule, for an epoch of ``length`` positions resumed after the first ``start`` were consumed:

- Each rank gets the same number of samples, ``ceil((length - start) / world_size)`` with
  ``uneven="pad"`` or ``floor(...)`` with ``uneven="drop"``.
- Rank ``r`` takes global positions ``start + k * world_size + r`` for ``k = 0, 1, ...`` (interleaved),
  so when every rank has consumed ``m`` samples the consumed positions are exactly the prefix
  ``[0, start + m * world_size)``: one integer resumes the epoch, for any new world size.
- Inside a rank, sample ``k`` belongs to batch ``k // batch_size`` and batch ``b`` to worker
  ``b % num_workers``: the round-robin order in which a PyTorch DataLoader collects batches from
  its workers, so the rank's samples come out in order ``k = 0, 1, ...``.
- With ``uneven="pad"`` positions at or past ``length`` are valid: an infinite sampler (random
  patches) draws fresh samples there, a finite one (windows, volumes) repeats from its start and
  marks the repeat as padding.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

STATE_VERSION = 1
"""Version of the :class:`ReaderState` layout."""

Uneven = Literal["pad", "drop"]


def per_rank_count(start: int, length: int, world_size: int, uneven: Uneven) -> int:
    """Samples each rank reads in the rest of the epoch (``length - start`` positions left)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if uneven not in ("pad", "drop"):
        raise ValueError(f"uneven must be 'pad' or 'drop', got {uneven!r}")
    left = max(0, int(length) - int(start))
    return -(-left // world_size) if uneven == "pad" else left // world_size


def assign_positions(
    *,
    start: int,
    length: int,
    rank: int,
    world_size: int,
    worker: int = 0,
    num_workers: int = 1,
    batch_size: int = 1,
    uneven: Uneven = "pad",
) -> np.ndarray:
    """Global positions that (``rank``, ``worker``) reads, in the order it reads them (int64)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if num_workers < 1 or not 0 <= worker < num_workers:
        raise ValueError(f"worker must be in [0, {num_workers}), got {worker}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = per_rank_count(start, length, world_size, uneven)
    k = np.arange(count, dtype=np.int64)
    k = k[(k // batch_size) % num_workers == worker]
    return int(start) + k * world_size + rank


@dataclass(frozen=True)
class ReaderState:
    """Everything needed to resume a sample stream exactly (``state_dict()`` returns its dict).

    The first block of fields defines the stream; loading a state into a stream whose settings
    differ in any of them is an error. ``world_size``, ``num_workers`` and ``batch_size`` only
    record how the state was made: a stream may resume with other values.
    """

    version: int
    """Layout version of this record (:data:`STATE_VERSION`)."""
    dataset: str
    """Fingerprint of the dataset version and its exact list of cases."""
    sampler: str
    """Canonical JSON of the sampler settings."""
    seed: int
    """Seed of the stream."""
    uneven: str
    """How ranks were evened out: ``pad`` or ``drop``."""
    epoch: int
    """Epoch to resume in."""
    position: int
    """Global positions of that epoch already consumed (a prefix)."""
    world_size: int
    """Ranks when the state was saved (informational)."""
    num_workers: int
    """Workers per rank when the state was saved (informational)."""
    batch_size: int
    """Batch size when the state was saved (informational)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReaderState:
        """Parse a ``state_dict()``; raises ValueError naming missing or unknown fields."""
        if not isinstance(data, dict):
            raise ValueError(f"reader state must be a dict, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ValueError(f"reader state fields: missing {missing}, unknown {unknown}")
        if data["version"] != STATE_VERSION:
            raise ValueError(
                f"reader state version {data['version']!r} is not supported; expected {STATE_VERSION}"
            )
        return cls(**{n: data[n] for n in names})

    def check_matches(self, current: ReaderState) -> None:
        """Raise ValueError naming every stream-defining field that differs from ``current``."""
        diffs = []
        for name in ("dataset", "sampler", "seed", "uneven"):
            saved, now = getattr(self, name), getattr(current, name)
            if saved != now:
                diffs.append(f"{name}: saved {saved!r}, current {now!r}")
        if diffs:
            raise ValueError(
                "reader state does not match this stream (" + "; ".join(diffs) + "); "
                "resume with the same dataset, sampler, seed and uneven settings"
            )


def sampler_key(settings: dict[str, Any]) -> str:
    """Canonical JSON of sampler settings."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))

"""The index of one shard object (Zarr v3 ``sharding_indexed``; docs/FORMAT.md, "Arrays").

The writer builds a :class:`ShardIndex` while it encodes a shard and stores :meth:`ShardIndex.to_bytes`
in front of the chunks; the reader parses those bytes with :meth:`ShardIndex.from_bytes` and looks
up many chunks at once with :meth:`ShardIndex.byte_ranges`. numpy and crc32c only (no zarr).
"""

from __future__ import annotations

from dataclasses import dataclass

import crc32c as _crc32c
import numpy as np

from hcc_shards.errors import CorruptChunkError

__all__ = ["ABSENT", "CRC_NBYTES", "ENTRY_NBYTES", "ShardIndex", "check_crc", "crc_bytes"]

ABSENT = 2**64 - 1
"""Offset and length of an index entry whose inner chunk the shard does not store (it reads as fill)."""
ENTRY_NBYTES = 16
"""Bytes per inner chunk in the index: uint64 offset and uint64 length, little-endian."""
CRC_NBYTES = 4
"""Bytes of a crc32c checksum (little-endian), after the index and after each chunk."""


def crc_bytes(data: bytes | memoryview) -> bytes:
    """The little-endian crc32c of ``data``, as the ``crc32c`` codec appends it."""
    return _crc32c.crc32c(data).to_bytes(CRC_NBYTES, "little")


def check_crc(buf: memoryview, what: str) -> memoryview:
    """``buf`` without its trailing crc32c; CorruptChunkError (message starting with ``what``) when
    the checksum does not match or ``buf`` is too short to hold one."""
    if len(buf) < CRC_NBYTES:
        raise CorruptChunkError(f"{what}{len(buf)} bytes is too short to hold a crc32c")
    body = buf[:-CRC_NBYTES]
    stored = int.from_bytes(buf[-CRC_NBYTES:], "little")
    actual = _crc32c.crc32c(body)
    if stored != actual:
        raise CorruptChunkError(f"{what}crc32c mismatch (stored {stored:#010x}, computed {actual:#010x})")
    return body


@dataclass(frozen=True)
class ShardIndex:
    """Where each inner chunk of one shard lies in the shard object, inner chunks in C order.

    Held as byte ranges and a stored flag, ready for many lookups at once; stored as the codec's
    table of (offset, length), :data:`ABSENT` twice for a chunk the shard does not store
    (:meth:`entries`). The writer fills it in with :meth:`set_chunk` while it encodes the shard;
    a parsed index is never changed.
    """

    starts: np.ndarray
    """int64 first byte of each inner chunk (0 when absent)."""
    ends: np.ndarray
    """int64 one past the last byte of each inner chunk (0 when absent)."""
    present: np.ndarray
    """bool: the shard stores the inner chunk (else it reads as fill value)."""

    def __post_init__(self) -> None:
        n = self.starts.shape
        ok = len(n) == 1 and self.ends.shape == n and self.present.shape == n
        if (
            not ok
            or self.starts.dtype != np.int64
            or self.ends.dtype != np.int64
            or self.present.dtype != bool
        ):
            raise ValueError(
                "shard index needs int64 starts and ends and bool present of one length, got "
                f"{self.starts.dtype} {self.starts.shape}, {self.ends.dtype} {self.ends.shape}, "
                f"{self.present.dtype} {self.present.shape}"
            )

    @classmethod
    def empty(cls, n_chunks: int) -> ShardIndex:
        """An index of ``n_chunks`` inner chunks, all absent."""
        n = int(n_chunks)
        return cls(np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool))

    @staticmethod
    def nbytes(n_chunks: int, *, crc: bool = True) -> int:
        """Size of the stored index of ``n_chunks`` inner chunks (with its crc32c when ``crc``)."""
        return ENTRY_NBYTES * int(n_chunks) + (CRC_NBYTES if crc else 0)

    @property
    def n_chunks(self) -> int:
        return int(self.starts.shape[0])

    def set_chunk(self, k: int, offset: int, length: int) -> None:
        """Record that inner chunk ``k`` (C order) is stored at ``[offset, offset + length)``."""
        self.starts[k], self.ends[k], self.present[k] = offset, offset + length, True

    def absent(self) -> np.ndarray:
        """bool per inner chunk: the shard does not store it."""
        return ~self.present

    def byte_ranges(self, chunks: np.ndarray) -> tuple[list[int], list[int], list[bool]]:
        """(first byte, one past the last byte, stored) of the inner chunks ``chunks`` (flat C-order
        indices), as lists (the reader loops over them); the byte range 0..0 for an absent chunk."""
        return self.starts[chunks].tolist(), self.ends[chunks].tolist(), self.present[chunks].tolist()

    def entries(self) -> np.ndarray:
        """The stored table: uint64 (offset, length) per inner chunk, :data:`ABSENT` twice when absent."""
        out = np.full((self.n_chunks, 2), ABSENT, dtype="<u8")
        out[self.present, 0] = self.starts[self.present]
        out[self.present, 1] = (self.ends - self.starts)[self.present]
        return out

    def to_bytes(self, *, crc: bool = True) -> bytes:
        """The stored index: :meth:`entries`, then their crc32c when ``crc`` (index codecs ``bytes`` + ``crc32c``)."""
        head = self.entries().tobytes()
        return head + crc_bytes(head) if crc else head

    @classmethod
    def from_bytes(
        cls, data: bytes | memoryview, n_chunks: int, *, crc: bool = True, what: str
    ) -> ShardIndex:
        """Parse a stored index of ``n_chunks`` inner chunks; ``what`` names it in errors.

        Raises CorruptChunkError when its size is not that of such an index or its crc32c fails.
        """
        buf = memoryview(data)
        expected = cls.nbytes(n_chunks, crc=crc)
        if len(buf) != expected:
            raise CorruptChunkError(f"{what}: shard index has {len(buf)} bytes, expected {expected}")
        if crc:
            buf = check_crc(buf, f"{what} shard index: ")
        table = np.frombuffer(buf, dtype="<u8").reshape(int(n_chunks), 2)
        present = ~((table[:, 0] == ABSENT) & (table[:, 1] == ABSENT))
        starts = np.where(present, table[:, 0], 0).astype(np.int64)
        return cls(starts, starts + np.where(present, table[:, 1], 0).astype(np.int64), present)

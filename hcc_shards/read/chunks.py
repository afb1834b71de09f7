"""Zarr v3 array metadata, codecs and shard indexes, parsed and decoded without zarr-python.

Only what docs/FORMAT.md allows is accepted: a regular chunk grid, the ``bytes`` codec
(little or big endian), ``zstd`` or ``blosc`` compression, ``crc32c`` checksums, and optionally
``sharding_indexed`` with the index at the start or end of each shard. Anything else raises
:class:`~hcc_shards.errors.FormatError` naming the array and the value found.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import zstandard

from hcc_shards.errors import CorruptChunkError, FormatError
from hcc_shards.shard_index import ShardIndex, check_crc

_COMPRESSORS = ("zstd", "blosc")
_local = threading.local()


@dataclass(frozen=True)
class ArrayMeta:
    """What the reader needs from one array's ``zarr.json``."""

    shape: tuple[int, ...]
    """Array shape in array order (z, y, x) for volumes."""
    dtype: np.dtype
    """Element type, with the byte order of the stored chunks."""
    fill_value: int | float
    """Value of every element no chunk stores."""
    grid_shape: tuple[int, ...]
    """Shape of one stored object: the shard shape, or the chunk shape of an unsharded array."""
    chunk_shape: tuple[int, ...]
    """Shape of one decodable chunk: the inner chunk of a shard, else equal to ``grid_shape``."""
    compressor: str | None
    """``zstd``, ``blosc`` or None; applied to each (inner) chunk after the ``bytes`` codec."""
    chunk_crc: bool
    """Each (inner) chunk ends with a little-endian crc32c of the bytes before it."""
    sharded: bool
    """Stored objects are shards with an index of inner chunks."""
    index_at_start: bool
    """Shard index location (only meaningful when sharded)."""
    index_crc: bool
    """The shard index ends with a crc32c."""
    key_separator: str
    """Separator of chunk coordinates in object keys."""
    key_prefix: str
    """``c`` for the v3 default key encoding (``c/0/0/0``), empty for the v2 encoding (``0.0.0``)."""

    @cached_property
    def chunks_per_shard(self) -> tuple[int, ...]:
        """Inner chunks along each axis of one shard."""
        return tuple(g // c for g, c in zip(self.grid_shape, self.chunk_shape, strict=True))

    @cached_property
    def index_nbytes(self) -> int:
        """Size of a shard index in bytes (16 per inner chunk, plus the checksum)."""
        return ShardIndex.nbytes(int(np.prod(self.chunks_per_shard)), crc=self.index_crc)

    @cached_property
    def chunk_nbytes(self) -> int:
        """Decoded size of one (inner) chunk."""
        return int(np.prod(self.chunk_shape)) * self.dtype.itemsize

    def object_key(self, grid_coords: Sequence[int]) -> str:
        """Key of the stored object at ``grid_coords``, relative to the array."""
        body = self.key_separator.join(str(int(c)) for c in grid_coords)
        if not self.key_prefix:
            return body if grid_coords else "0"
        return f"{self.key_prefix}{self.key_separator}{body}" if grid_coords else self.key_prefix


def parse_array_meta(doc: dict[str, Any], *, where: str) -> ArrayMeta:
    """Parse an array ``zarr.json`` document; ``where`` names it in errors."""
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "array":
        raise FormatError(
            f"{where}: expected zarr_format 3 and node_type 'array', "
            f"got {doc.get('zarr_format')!r} and {doc.get('node_type')!r}"
        )
    try:
        shape = tuple(int(s) for s in doc["shape"])
        grid = doc["chunk_grid"]
        if grid.get("name") != "regular":
            raise FormatError(f"{where}: expected a 'regular' chunk grid, got {grid.get('name')!r}")
        grid_shape = tuple(int(s) for s in grid["configuration"]["chunk_shape"])
        codecs = list(doc["codecs"])
        data_type = doc["data_type"]
        fill = doc.get("fill_value", 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{where}: malformed array metadata ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data_type, str):
        raise FormatError(f"{where}: expected a data_type name, got {data_type!r}")
    try:
        base = np.dtype(data_type)
    except TypeError as exc:
        raise FormatError(f"{where}: unsupported data_type {data_type!r}") from exc
    if len(grid_shape) != len(shape):
        raise FormatError(f"{where}: chunk shape {grid_shape} does not match array shape {shape}")
    sep, prefix = _key_encoding(doc.get("chunk_key_encoding"), where)

    sharded = len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed"
    index_at_start, index_crc = False, False
    chunk_shape = grid_shape
    if sharded:
        cfg = codecs[0].get("configuration", {})
        chunk_shape = tuple(int(s) for s in cfg.get("chunk_shape", ()))
        if len(chunk_shape) != len(shape) or any(
            c <= 0 or g % c for g, c in zip(grid_shape, chunk_shape, strict=True)
        ):
            raise FormatError(
                f"{where}: shard shape {grid_shape} must be a multiple of inner chunk shape {chunk_shape}"
            )
        location = cfg.get("index_location", "end")
        if location not in ("start", "end"):
            raise FormatError(f"{where}: index_location must be 'start' or 'end', got {location!r}")
        index_at_start = location == "start"
        idx_dtype, idx_comp, index_crc = _codec_chain(cfg.get("index_codecs", []), where + " (index)")
        if idx_comp is not None or idx_dtype != "<":
            raise FormatError(
                f"{where}: shard index codecs must be bytes(little) [+ crc32c], "
                f"got {cfg.get('index_codecs')!r}"
            )
        codecs = list(cfg.get("codecs", []))
    endian, compressor, chunk_crc = _codec_chain(codecs, where)
    return ArrayMeta(
        shape=shape,
        dtype=base.newbyteorder(endian) if base.itemsize > 1 else base,
        fill_value=_fill(fill, base, where),
        grid_shape=grid_shape,
        chunk_shape=chunk_shape,
        compressor=compressor,
        chunk_crc=chunk_crc,
        sharded=sharded,
        index_at_start=index_at_start,
        index_crc=index_crc,
        key_separator=sep,
        key_prefix=prefix,
    )


def _key_encoding(enc: Any, where: str) -> tuple[str, str]:
    if enc is None:
        return "/", "c"
    name = enc.get("name") if isinstance(enc, dict) else None
    sep = (enc.get("configuration") or {}).get("separator") if isinstance(enc, dict) else None
    if name == "default":
        return sep or "/", "c"
    if name == "v2":
        return sep or ".", ""
    raise FormatError(f"{where}: chunk_key_encoding must be 'default' or 'v2', got {enc!r}")


def _codec_chain(codecs: list[dict[str, Any]], where: str) -> tuple[str, str | None, bool]:
    """(byte order, compressor or None, crc32c) of ``bytes [+ zstd|blosc] [+ crc32c]``."""
    names = [c.get("name") for c in codecs]
    if not names or names[0] != "bytes":
        raise FormatError(f"{where}: the codec chain must start with 'bytes', got {names}")
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    if endian not in ("little", "big"):
        raise FormatError(f"{where}: bytes endian must be 'little' or 'big', got {endian!r}")
    rest = names[1:]
    crc = bool(rest) and rest[-1] == "crc32c"
    if crc:
        rest = rest[:-1]
    if len(rest) > 1 or (rest and rest[0] not in _COMPRESSORS):
        raise FormatError(
            f"{where}: expected bytes [+ one of {list(_COMPRESSORS)}] [+ crc32c], got codecs {names}"
        )
    return ("<" if endian == "little" else ">"), (rest[0] if rest else None), crc


def _fill(value: Any, dtype: np.dtype, where: str) -> int | float:
    try:
        if dtype.kind in "iub":
            return int(value)
        if dtype.kind == "f":
            return float(value)  # "NaN" / "Infinity" strings are valid JSON fill values in v3
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{where}: fill_value {value!r} does not fit data_type {dtype}") from exc
    raise FormatError(f"{where}: unsupported data_type {dtype}")


# -- decoding ------------------------------------------------------------------------------


def _zstd() -> zstandard.ZstdDecompressor:
    # ZstdDecompressor objects are not thread-safe: keep one per thread.
    dctx = getattr(_local, "zstd", None)
    if dctx is None:
        dctx = _local.zstd = zstandard.ZstdDecompressor()
    return dctx


def blosc_module() -> Any:
    """numcodecs.blosc, imported on first use, its own threads off."""
    return _blosc()


def _blosc() -> Any:
    # Only datasets written with blosc pay for this import; numcodecs warns about the crc32c
    # package it finds next to it, which is ours, not its concern.
    mod = getattr(_local, "blosc", None)
    if mod is None:
        # record=True: numcodecs installs its own "once" filter in front of any "ignore" of ours.
        with warnings.catch_warnings(record=True):
            from numcodecs import blosc as mod
        # Decode in the calling thread: the reader parallelises across patches, and blosc's own
        # thread pool would oversubscribe DataLoader workers.
        mod.use_threads = False
        _local.blosc = mod
    return mod


def scratch(nbytes: int) -> np.ndarray:
    """This thread's reusable buffer of ``nbytes`` bytes (one per size).

    Chunks are decoded into it and copied out at once, so a patch allocates only its outputs
    (the buffer stays in cache; fresh memory would first be faulted in). Its content is valid
    until the next decode of the same size in this thread.
    """
    bufs = getattr(_local, "scratch", None)
    if bufs is None:
        bufs = _local.scratch = {}
    buf = bufs.get(nbytes)
    if buf is None:
        buf = bufs[nbytes] = np.empty(nbytes, dtype=np.uint8)
    return buf


def decode_chunk(
    meta: ArrayMeta, data: bytes | memoryview, *, what: str = "", reuse: bool = False
) -> np.ndarray:
    """Decode one stored (inner) chunk into an array of ``meta.chunk_shape``.

    With ``reuse``, blosc chunks are decompressed into this thread's scratch buffer (see
    :func:`scratch`) and the result is only valid until the next such decode: copy it first.
    Raises CorruptChunkError (its message starts with ``what: `` when given) when the checksum
    fails or the bytes cannot be decompressed to the expected size.
    """
    what = f"{what}: " if what else ""
    buf = memoryview(data)
    if meta.chunk_crc:
        buf = check_crc(buf, what)
    expected = meta.chunk_nbytes
    try:
        if meta.compressor == "zstd":
            raw: Any = _zstd().decompress(buf, max_output_size=expected)
        elif meta.compressor == "blosc":
            # numcodecs checks the frame's decoded size against the buffer's (ValueError).
            raw = _blosc().decompress(buf, scratch(expected)) if reuse else _blosc().decompress(buf)
        else:
            raw = buf
    except Exception as exc:  # the codecs raise their own error types for malformed frames
        raise CorruptChunkError(f"{what}cannot decompress ({type(exc).__name__}: {exc})") from exc
    if len(raw) != expected:
        raise CorruptChunkError(f"{what}decoded {len(raw)} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=meta.dtype).reshape(meta.chunk_shape)


def parse_shard_index(meta: ArrayMeta, data: bytes | memoryview, *, what: str) -> ShardIndex:
    """The index of one shard of the array ``meta`` (CorruptChunkError when its size or crc32c is wrong)."""
    return ShardIndex.from_bytes(data, int(np.prod(meta.chunks_per_shard)), crc=meta.index_crc, what=what)

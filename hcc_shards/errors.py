"""Named exceptions of hcc-shards; every library error derives from HccShardsError."""

from __future__ import annotations


class HccShardsError(Exception):
    """Base class of every error raised on purpose by hcc-shards."""


class QuarantineError(HccShardsError):
    """An input cannot become a case; carries a stable reason code (see hcc_shards.quarantine)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message

    def __reduce__(self):  # keep code and message through pickling (Beam, Dask, multiprocessing)
        return (type(self), (self.code, self.message))


class FormatError(HccShardsError):
    """A dataset on disk does not follow docs/FORMAT.md (bad manifest, dataset.json, attributes)."""


class CorruptChunkError(HccShardsError):
    """A stored chunk or shard index failed its checksum or could not be decoded."""


class ConfigError(HccShardsError, ValueError):
    """A configuration value is out of range or inconsistent."""

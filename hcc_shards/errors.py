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


class OperatorError(HccShardsError):
    """A mistake in how a command was called, found before any work; ``exit_code`` tells them apart."""

    exit_code = 2


class UnknownFlagError(OperatorError, ValueError):
    """A flag that neither hcc-shards nor Apache Beam knows."""

    exit_code = 2


class InputMissingError(OperatorError):
    """INPUT names nothing that exists."""

    exit_code = 3


class UnknownSchemeError(OperatorError):
    """A URL scheme no installed fsspec filesystem handles."""

    exit_code = 4


class OutputNotWritableError(OperatorError):
    """OUTPUT is a file, read-only or otherwise cannot be written (found by a write probe)."""

    exit_code = 5


class EmptyBuildError(OperatorError):
    """The build found no case to write; nothing was committed (``--allow-empty`` commits anyway)."""

    exit_code = 6


class OutputLockedError(OperatorError):
    """Another build holds OUTPUT's lease (hcc_shards.lease) and did not let go within --lock-wait."""

    exit_code = 7


class PredictionError(HccShardsError, ValueError):
    """Predictions that cannot be written back: an unknown case, a wrong shape or label value, a set
    name already taken. Raised before anything is written."""

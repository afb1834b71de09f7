"""Deterministic DICOM UIDs: a pure function of the cohort seed and a path of names."""

from __future__ import annotations

import hashlib


def derive_uid(seed: int, *parts: object) -> str:
    """A ``2.25.<int>`` UID from the seed and ``parts`` (e.g. patient, study, series, instance).

    The integer is the first 128 bits of a SHA-256, as a UUID-derived UID would be, so the
    same arguments always give the same UID and different arguments collide with negligible
    probability. The result is at most 44 characters (DICOM allows 64).
    """
    text = "/".join(str(p) for p in (seed, *parts))
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
    return f"2.25.{value}"


def derive_int(seed: int, *parts: object, modulo: int) -> int:
    """A deterministic integer in ``[0, modulo)`` from the seed and ``parts``."""
    if modulo < 1:
        raise ValueError(f"modulo must be >= 1, got {modulo}")
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % modulo

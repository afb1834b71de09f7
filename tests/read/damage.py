"""Damage a written test dataset on purpose: the stored chunk to hit, and one byte flipped in it."""

from __future__ import annotations

import os

import numpy as np


def first_image_chunk(root: str, version: str, case_id: str, index_nbytes: int) -> tuple[str, int, int]:
    """(shard file, byte offset, length) of inner chunk (0, 0, 0) of a case's image (index at the start)."""
    shard = os.path.join(root, f"versions/{version}/cases/{case_id}/0/c/0/0/0")
    with open(shard, "rb") as f:
        index = np.frombuffer(f.read(index_nbytes)[:-4], "<u8").reshape(-1, 2)
    return shard, int(index[0, 0]), int(index[0, 1])


def flip_byte(path: str, offset: int) -> None:
    """Invert every bit of the byte at ``offset`` of ``path``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))

"""A minimal docs/FORMAT.md writer using only numpy, zstandard, crc32c, numcodecs and pyarrow.

It lets the reader be tested in the thin reader environment (no zarr, no build stack) and checks
that the format document says enough to write a readable dataset without zarr-python.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import crc32c
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

LABEL_NAMES = ("liver", "tumor", "portal_vein", "aorta")
EMPTY = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class MiniCase:
    """Arrays and facts of one case to write."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    split: str = "train"
    patient_id: str = ""
    direction: tuple[tuple[float, float, float], ...] | None = None
    """Rows of the direction matrix (column a: LPS unit vector of axis a); None: axial identity."""


@dataclass(frozen=True)
class MiniLayout:
    """Chunking and codec of the written arrays."""

    chunk: tuple[int, int, int] = (8, 16, 16)
    shard: tuple[int, int, int] = (16, 32, 32)
    compressor: str = "zstd"
    version: str = "0123456789ab"
    extra: dict = field(default_factory=dict)


def _with_crc(data: bytes) -> bytes:
    return data + crc32c.crc32c(data).to_bytes(4, "little")


def _compress(raw: bytes, compressor: str, itemsize: int) -> bytes:
    if compressor == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(raw)
    with warnings.catch_warnings(record=True):
        # numcodecs warns about the crc32c package installed next to it; not this writer's concern.
        from numcodecs import blosc

    return blosc.compress(raw, b"lz4", 5, blosc.SHUFFLE, itemsize)


def _codec_json(compressor: str, itemsize: int) -> list[dict]:
    comp = (
        {"name": "zstd", "configuration": {"level": 3, "checksum": False}}
        if compressor == "zstd"
        else {
            "name": "blosc",
            "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle", "typesize": itemsize},
        }
    )
    return [{"name": "bytes", "configuration": {"endian": "little"}}, comp, {"name": "crc32c"}]


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_sharded(path: str, data: np.ndarray, fill: int, layout: MiniLayout) -> None:
    """A 3-d sharded array (index at the start, bytes+crc32c) under ``path``."""
    chunk = layout.chunk
    shard = tuple(
        min(s, math.ceil(n / c) * c) for s, n, c in zip(layout.shard, data.shape, chunk, strict=True)
    )
    item = data.dtype.itemsize
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(data.shape),
        "data_type": data.dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(shard)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": list(chunk),
                    "codecs": _codec_json(layout.compressor, item),
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "start",
                },
            }
        ],
        "attributes": {},
        "dimension_names": ["z", "y", "x"],
    }
    _write(f"{path}/zarr.json", json.dumps(meta).encode())
    cps = [s // c for s, c in zip(shard, chunk, strict=True)]
    n_inner = int(np.prod(cps))
    index_nbytes = 16 * n_inner + 4
    grid = [math.ceil(n / s) for n, s in zip(data.shape, shard, strict=True)]
    for sc in itertools.product(*(range(g) for g in grid)):
        table = np.full((n_inner, 2), EMPTY, dtype="<u8")
        blobs = []
        offset = index_nbytes
        for i, ic in enumerate(itertools.product(*(range(c) for c in cps))):
            lo = [s * sh + c * ch for s, sh, c, ch in zip(sc, shard, ic, chunk, strict=True)]
            block = np.full(chunk, fill, dtype=data.dtype)
            src = data[tuple(slice(a, a + c) for a, c in zip(lo, chunk, strict=True))]
            block[tuple(slice(0, s) for s in src.shape)] = src
            if src.size == 0 or np.all(block == fill):
                continue
            enc = _with_crc(
                _compress(block.astype(block.dtype.newbyteorder("<")).tobytes(), layout.compressor, item)
            )
            table[i] = (offset, len(enc))
            blobs.append(enc)
            offset += len(enc)
        if not blobs:
            continue
        body = _with_crc(table.tobytes()) + b"".join(blobs)
        _write(f"{path}/c/" + "/".join(str(c) for c in sc), body)


def write_locations(path: str, locations: np.ndarray) -> None:
    """A (N, 3) int32 array in one chunk, bytes + zstd + crc32c."""
    n = int(locations.shape[0])
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [n, 3],
        "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [max(1, n), 3]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": _codec_json("zstd", 4),
        "attributes": {},
    }
    _write(f"{path}/zarr.json", json.dumps(meta).encode())
    if n:
        raw = np.ascontiguousarray(locations, dtype="<i4").tobytes()
        _write(f"{path}/c/0/0", _with_crc(zstandard.ZstdCompressor().compress(raw)))


def sample_locations(label: np.ndarray, value: int, rng: np.random.Generator, n: int = 200) -> np.ndarray:
    where = np.argwhere(label == value)
    if len(where) > n:
        where = where[np.sort(rng.choice(len(where), n, replace=False))]
    return where.astype(np.int32)


def write_dataset(root: str, cases: Sequence[MiniCase], layout: MiniLayout = MiniLayout()) -> str:
    """Write ``cases`` as a committed version under ``root``; returns the version folder."""
    vroot = f"{root}/versions/{layout.version}"
    rng = np.random.default_rng(0)
    rows = []
    for case in cases:
        cdir = f"{vroot}/cases/{case.case_id}"
        fg = {}
        for value, name in enumerate(LABEL_NAMES, start=1):
            mask = case.label == value
            count = int(mask.sum())
            locs = sample_locations(case.label, value, rng)
            write_locations(f"{cdir}/foreground/{name}", locs)
            if count:
                idx = np.argwhere(mask)
                bbox = [idx.min(0).tolist(), (idx.max(0) + 1).tolist()]
            else:
                bbox = None
            fg[name] = {"count": count, "bbox_zyx": bbox}
        direction = [list(r) for r in case.direction or ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))]
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(direction) * np.asarray(case.spacing)[None, :]
        affine[:3, 3] = case.origin
        geometry = {
            "shape_zyx": list(case.image.shape),
            "spacing_zyx": list(case.spacing),
            "origin_lps": list(case.origin),
            "direction": direction,
            "affine": affine.tolist(),
        }
        attrs = {
            "format_version": 1,
            "case_id": case.case_id,
            "geometry": geometry,
            "labels": {str(v): n for v, n in enumerate(LABEL_NAMES, start=1)},
            "foreground": fg,
            "provenance": {},
        }
        group = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {"ome": {"version": "0.5"}, "hcc_shards": attrs},
        }
        _write(f"{cdir}/zarr.json", json.dumps(group).encode())
        write_sharded(f"{cdir}/0", case.image.astype(np.int16), -1024, layout)
        _write(f"{cdir}/labels/zarr.json", json.dumps({"zarr_format": 3, "node_type": "group"}).encode())
        write_sharded(f"{cdir}/labels/segmentation/0", case.label.astype(np.uint8), 0, layout)
        checksum = hashlib.sha256(case.image.tobytes() + case.label.tobytes()).hexdigest()
        _write(
            f"{cdir}/_COMPLETE.json",
            json.dumps({"format_version": 1, "case_id": case.case_id, "checksum": checksum}).encode(),
        )
        row = {
            "case_id": case.case_id,
            "patient_id": case.patient_id or case.case_id,
            "path": f"cases/{case.case_id}",
            "shape_zyx": list(case.image.shape),
            "spacing_zyx": list(case.spacing),
            "split": case.split,
            "checksum": checksum,
        }
        for name in LABEL_NAMES:
            row[f"voxels_{name}"] = fg[name]["count"]
        rows.append(row)
    table = pa.Table.from_pylist(rows)
    os.makedirs(vroot, exist_ok=True)
    pq.write_table(table, f"{vroot}/manifest.parquet")
    dataset = {
        "format_version": 1,
        "name": "mini",
        "config_hash": layout.version,
        "labels": [{"value": v, "name": n} for v, n in enumerate(LABEL_NAMES, start=1)],
        "target_spacing_zyx": list(cases[0].spacing),
        **layout.extra,
    }
    _write(f"{vroot}/dataset.json", json.dumps(dataset).encode())
    latest = {"format_version": 1, "version": layout.version, "path": f"versions/{layout.version}"}
    _write(f"{root}/LATEST.json", json.dumps(latest).encode())
    return vroot


def phantom(shape: Sequence[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth int16 image with noise and a label map with liver, tumour and aorta blobs."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    c = np.asarray(shape, dtype=np.float32) / 2
    r = (
        ((z - c[0]) / (shape[0] * 0.4)) ** 2
        + ((y - c[1]) / (shape[1] * 0.35)) ** 2
        + ((x - c[2]) / (shape[2] * 0.3)) ** 2
    )
    label = np.zeros(shape, dtype=np.uint8)
    label[r < 1.0] = 1
    t = ((z - c[0]) / 3) ** 2 + ((y - c[1] - 2) / 4) ** 2 + ((x - c[2] + 3) / 4) ** 2
    label[t < 1.0] = 2
    a = ((y - shape[1] * 0.2) / 2.5) ** 2 + ((x - shape[2] * 0.8) / 2.5) ** 2
    label[a < 1.0] = 4
    image = (-1000 + 1000 * (r < 2.0) + 60 * (label > 0) + 40 * (label == 2)).astype(np.float32)
    image += rng.normal(0, 10, size=shape).astype(np.float32)
    return np.clip(image, -1024, 3071).astype(np.int16), label

"""Write one case as an OME-Zarr 0.5 image group (Zarr v3, sharded), completion marker last.

Order of operations for one case (docs/FORMAT.md, "Atomicity and resume"): (1) if
``cases/<case_id>/_COMPLETE.json`` exists for this version, return its row (a no-op, so a resumed
build skips the case); (2) remove whatever an interrupted attempt left under the case prefix;
(3) class locations, bounding boxes, HU statistics and the content checksum, in memory;
(4) the shards of the image array ``0`` and of the label array, each stored as it is encoded, then
in one batch the documents of the root group (``ome`` and ``hcc_shards`` attributes), the arrays,
the ``labels`` groups and the ``foreground/<label>`` arrays; (5) ``qc/<case_id>.png``;
(6) ``_COMPLETE.json`` with the manifest row. A case is complete only when its marker exists.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable
from typing import Any

import google_crc32c
import numcodecs
import numcodecs.abc
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from hcc_shards import storage
from hcc_shards.case import Case
from hcc_shards.config import FORMAT_VERSION, BuildConfig
from hcc_shards.errors import FormatError
from hcc_shards.geometry import AXES_ZYX, Geometry
from hcc_shards.labels import LABELS
from hcc_shards.shards.atomic import put_bytes_atomic, put_json_atomic, read_json
from hcc_shards.shards.foreground import ClassForeground, class_foreground
from hcc_shards.shards.manifest import ManifestRow
from hcc_shards.shards.qc import case_png

__all__ = [
    "COMPLETE_MARKER",
    "case_path",
    "content_checksum",
    "open_store",
    "read_complete_case",
    "write_case",
]

COMPLETE_MARKER = "_COMPLETE.json"
IMAGE_FILL = -1024
TUMOR_LIVER_RATIO_FLAG = 1.5


def case_path(case_id: str) -> str:
    """Case group path relative to the version root."""
    return f"cases/{case_id}"


def open_store(url: str, storage_options: dict[str, Any] | None = None, *, read_only: bool = False):
    """A zarr store on ``url``: LocalStore for local paths, FsspecStore for every other protocol."""
    if storage.protocol_of(url) == "file":
        _, path = storage.filesystem(url)
        return LocalStore(path, read_only=read_only)
    fs, path = storage.filesystem(url, storage_options)
    if isinstance(fs, storage.RetryingFileSystem):  # a client without retries of its own
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

        return FsspecStore(AsyncFileSystemWrapper(fs, asynchronous=True), path=path, read_only=read_only)
    return FsspecStore.from_url(url, storage_options=storage_options or {}, read_only=read_only)


def read_complete_case(
    version_url: str, case_id: str, config: BuildConfig, storage_options: dict[str, Any] | None = None
) -> ManifestRow | None:
    """The manifest row of a complete case of this version, or None when it is not complete."""
    marker = read_json(storage.join(version_url, case_path(case_id), COMPLETE_MARKER), storage_options)
    if marker is None:
        return None
    if marker.get("format_version") != FORMAT_VERSION or marker.get("config_hash") != config.config_hash():
        raise FormatError(
            f"{case_id}: completion marker has format_version {marker.get('format_version')} and config_hash "
            f"{marker.get('config_hash')!r}, expected {FORMAT_VERSION} and {config.config_hash()!r}; "
            "the version directory holds another build"
        )
    return ManifestRow.from_dict(marker["row"])


def stored_histogram(
    version_url: str, case_path_rel: str, storage_options: dict[str, Any] | None = None
) -> tuple[tuple[int, int], ...]:
    """The foreground HU histogram of a stored case (a resumed case's share of the fingerprint)."""
    from hcc_shards.shards.intensity import foreground_histogram

    root = zarr.open_group(
        open_store(storage.join(version_url, case_path_rel), storage_options, read_only=True), mode="r"
    )
    return foreground_histogram(root["0"][...], root["labels/segmentation/0"][...])


def write_case(
    case: Case,
    version_url: str,
    config: BuildConfig,
    storage_options: dict[str, Any] | None = None,
    *,
    split: str,
) -> ManifestRow:
    """Write ``case`` under ``version_url/cases/<case_id>/`` per docs/FORMAT.md and return its row."""
    case_id = case.case_id
    done = read_complete_case(version_url, case_id, config, storage_options)
    if done is not None:
        return done
    if config.target_spacing is not None and not np.allclose(
        case.geometry.spacing, config.target_spacing, rtol=1e-6, atol=0
    ):
        raise ValueError(
            f"{case_id}: case spacing {case.geometry.spacing} differs from the build's target spacing "
            f"{config.target_spacing}; resample the case first (hcc_shards.resample.resample_case)"
        )
    url = storage.join(version_url, case_path(case_id))
    fs, path = storage.filesystem(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)

    fg = class_foreground(
        case.label,
        case_id=case_id,
        seed=config.seed,
        min_samples=config.class_locations_samples,
        fraction=config.class_locations_fraction,
    )
    hu = _hu_stats(case.image, case.label)
    attrs = case_attributes(case, fg, config)
    checksum = content_checksum(case.image, case.label, fg, attrs)
    row = _manifest_row(case, fg, hu, split=split, checksum=checksum)
    attrs["qc_flags"] = list(row.qc_flags)

    # The hierarchy's documents and the small foreground arrays are made in memory and stored in
    # one batch (one round of concurrent puts on object stores, not one put after the other);
    # the shards, large, are stored as soon as each is encoded.
    docs: dict[str, Any] = {}
    root = zarr.create_group(
        MemoryStore(docs),
        zarr_format=3,
        overwrite=True,
        attributes={"ome": _ome_image(case), "hcc_shards": attrs},
    )

    def put_shard(key: str, blob: bytes) -> None:
        storage.put_objects(fs, {f"{path}/{key}": blob})

    _write_volume(root, "0", case.image, IMAGE_FILL, config, put_shard)
    labels = root.create_group("labels", attributes={"ome": {"version": "0.5", "labels": ["segmentation"]}})
    seg = labels.create_group("segmentation", attributes={"ome": _ome_label(case)})
    _write_volume(seg, "0", case.label, 0, config, put_shard)
    fg_group = root.create_group("foreground")
    for name, cf in fg.items():
        arr = fg_group.create_array(
            name,
            shape=cf.locations.shape,
            dtype="int32",
            chunks=(max(1, cf.locations.shape[0]), 3),
            compressors=[ZstdCodec(level=config.compression_level), Crc32cCodec()],
            fill_value=0,
            dimension_names=["sample", "zyx"],
        )
        if cf.locations.size:
            arr[...] = cf.locations
    storage.put_objects(fs, {f"{path}/{key}": buf.to_bytes() for key, buf in docs.items()})

    title = f"{case_id}  {case.provenance.patient_id}"
    put_bytes_atomic(
        storage.join(version_url, "qc", f"{case_id}.png"),
        case_png(
            case.image, case.label, case.geometry.spacing, title=title, direction=case.geometry.direction
        ),
        storage_options,
    )
    marker = {
        "format_version": FORMAT_VERSION,
        "case_id": case_id,
        "config_hash": config.config_hash(),
        "checksum": checksum,
        "row": row.to_dict(),
    }
    put_json_atomic(storage.join(url, COMPLETE_MARKER), marker, storage_options)
    return row


def case_attributes(case: Case, fg: dict[str, ClassForeground], config: BuildConfig) -> dict[str, Any]:
    """The ``hcc_shards`` attributes of a case group (docs/FORMAT.md)."""
    src = case.source_geometry or case.geometry
    return {
        "format_version": FORMAT_VERSION,
        "case_id": case.case_id,
        "config_hash": config.config_hash(),
        "geometry": _geometry_dict(case.geometry),
        "source_geometry": _geometry_dict(src),
        "labels": {str(lab.value): lab.name for lab in LABELS},
        "foreground": {
            name: {"count": cf.count, "bbox_zyx": cf.bbox_list(), "samples": int(cf.locations.shape[0])}
            for name, cf in fg.items()
        },
        "provenance": case.provenance.to_dict(),
        "warnings": list(case.warnings),
        "unknown_segments": list(case.unknown_segments),
    }


def content_checksum(
    image: np.ndarray, label: np.ndarray, fg: dict[str, ClassForeground], attrs: dict[str, Any]
) -> str:
    """sha256 of the decoded content: image (int16 LE), label, locations (int32 LE), attributes JSON."""
    h = hashlib.sha256(b"hcc-shards-case-v1\0")
    h.update(np.ascontiguousarray(image, dtype="<i2").data)
    h.update(np.ascontiguousarray(label, dtype=np.uint8).data)
    for lab in LABELS:
        h.update(np.ascontiguousarray(fg[lab.name].locations, dtype="<i4").data)
    h.update(json.dumps(attrs, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


# -- internals ---------------------------------------------------------------------------


def _geometry_dict(g: Geometry) -> dict[str, Any]:
    d = g.to_dict()
    d["affine"] = g.affine.tolist()
    return d


def _shuffle(config: BuildConfig, itemsize: int) -> str:
    # Bit shuffle pays off on noisy int16 HU; on one-byte labels it would slow decoding for nothing.
    return config.image_shuffle if itemsize > 1 else "shuffle"


def _codecs(config: BuildConfig, itemsize: int) -> list[Any]:
    if config.compressor == "blosc":
        comp = BloscCodec(
            cname="lz4",
            clevel=config.compression_level,
            shuffle=_shuffle(config, itemsize),
            typesize=itemsize,
        )
    else:
        comp = ZstdCodec(level=config.compression_level)
    return [comp, Crc32cCodec()]


def _write_volume(
    group: zarr.Group,
    name: str,
    data: np.ndarray,
    fill: int,
    config: BuildConfig,
    put: Callable[[str, bytes], None],
) -> None:
    chunks = tuple(config.chunk_shape)
    # A shard never extends more than one chunk past the array (no empty chunk slots in the index).
    shards = tuple(
        min(s, math.ceil(n / c) * c) for s, n, c in zip(config.shard_shape, data.shape, chunks, strict=True)
    )
    arr = group.create_array(
        name,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        shards={"shape": shards, "index_location": "start"},
        compressors=_codecs(config, data.dtype.itemsize),
        fill_value=fill,
        dimension_names=list(AXES_ZYX),
    )
    _store_shards(arr, data, fill, chunks, shards, _inner_compressor(config, data.dtype.itemsize), put)


_ABSENT = 2**64 - 1
"""Index entry (offset and length) of an absent inner chunk."""


def _inner_compressor(config: BuildConfig, itemsize: int) -> numcodecs.abc.Codec:
    """The numcodecs object behind the array's compressor codec (the same bytes zarr would write)."""
    if config.compressor == "blosc":
        return numcodecs.Blosc.from_config(
            {
                "cname": "lz4",
                "clevel": config.compression_level,
                "shuffle": {"shuffle": 1, "bitshuffle": 2}[_shuffle(config, itemsize)],
                "blocksize": 0,
                "typesize": itemsize,
            }
        )
    return numcodecs.Zstd(level=config.compression_level)


def _crc32c(data: bytes) -> bytes:
    return np.uint32(google_crc32c.value(data)).tobytes()


def _store_shards(
    arr: zarr.Array,
    data: np.ndarray,
    fill: int,
    chunks: tuple[int, ...],
    shards: tuple[int, ...],
    compressor: numcodecs.abc.Codec,
    put: Callable[[str, bytes], None],
) -> None:
    """Encode every shard of ``arr`` here and ``put`` it whole (docs/FORMAT.md, "Arrays").

    The same objects as ``arr[...] = data`` (index at the start, inner chunks ``bytes`` + compressor
    + crc32c, chunks equal to the fill value absent), without zarr's per-chunk task scheduling,
    which costs several times the compression itself on a full-size case.
    """
    per = [s // c for s, c in zip(shards, chunks, strict=True)]
    n_chunks = math.prod(per)
    little = data.dtype.newbyteorder("<")
    grid = [range(math.ceil(n / s)) for n, s in zip(data.shape, shards, strict=True)]
    for shard in itertools.product(*grid):
        index = np.full((n_chunks, 2), _ABSENT, dtype="<u8")
        parts: list[bytes] = []
        offset = 16 * n_chunks + 4
        for k, inner in enumerate(itertools.product(*(range(p) for p in per))):
            lo = [shard[a] * shards[a] + inner[a] * chunks[a] for a in range(3)]
            if any(lo[a] >= data.shape[a] for a in range(3)):
                continue
            block = data[tuple(slice(lo[a], lo[a] + chunks[a]) for a in range(3))]
            if not (block != fill).any():
                continue
            if block.shape != chunks:
                full = np.full(chunks, fill, dtype=little)
                full[tuple(slice(0, n) for n in block.shape)] = block
                block = full
            encoded = bytes(compressor.encode(np.ascontiguousarray(block, dtype=little)))
            parts.append(encoded + _crc32c(encoded))
            index[k] = (offset, len(parts[-1]))
            offset += len(parts[-1])
        if not parts:
            continue
        head = index.tobytes()
        blob = b"".join([head, _crc32c(head), *parts])
        put(f"{arr.path}/c/" + "/".join(str(i) for i in shard), blob)


def _multiscales(case: Case, name: str) -> list[dict[str, Any]]:
    g = case.geometry
    # Translation is the origin in the frame of the axes (direction columns): world = D (scale * i + t).
    translation = (g.direction.T @ np.asarray(g.origin)).tolist()
    return [
        {
            "name": name,
            "axes": [{"name": a, "type": "space", "unit": "millimeter"} for a in AXES_ZYX],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": list(g.spacing)},
                        {"type": "translation", "translation": translation},
                    ],
                }
            ],
        }
    ]


def _ome_image(case: Case) -> dict[str, Any]:
    return {"version": "0.5", "multiscales": _multiscales(case, case.case_id)}


def _ome_label(case: Case) -> dict[str, Any]:
    return {
        "version": "0.5",
        "multiscales": _multiscales(case, "segmentation"),
        "image-label": {
            "colors": [{"label-value": lab.value, "rgba": list(lab.rgba)} for lab in LABELS],
            "properties": [
                {"label-value": lab.value, "name": lab.name, "display": lab.display} for lab in LABELS
            ],
            "source": {"image": "../../"},
        },
    }


def _hu_stats(image: np.ndarray, label: np.ndarray) -> tuple[float, float, float]:
    """HU 0.5th percentile, mean, 99.5th percentile over labelled voxels (the whole image if none).

    From a histogram of the int16 values: exact, and a few times cheaper than sorting millions of
    values; the percentiles interpolate linearly between order statistics, as numpy's default.
    """
    values = image[label > 0]
    if values.size == 0:
        values = image.ravel()
    if values.dtype != np.int16:
        p005, p995 = np.percentile(values, [0.5, 99.5])
        return float(p005), float(values.mean(dtype=np.float64)), float(p995)
    counts = np.bincount(values.view(np.uint16) ^ np.uint16(0x8000), minlength=65536)
    hu = np.arange(-32768, 32768, dtype=np.int64)
    n = int(values.size)
    cumulative = np.cumsum(counts)

    def order_statistic(k: int) -> float:
        return float(hu[int(np.searchsorted(cumulative, k, side="right"))])

    def percentile(q: float) -> float:
        rank = q / 100.0 * (n - 1)
        lo = math.floor(rank)
        a, b = order_statistic(lo), order_statistic(min(lo + 1, n - 1))
        return a + (b - a) * (rank - lo)

    mean = float(int(counts @ hu) / n)
    return percentile(0.5), mean, percentile(99.5)


def _manifest_row(
    case: Case, fg: dict[str, ClassForeground], hu: tuple[float, float, float], *, split: str, checksum: str
) -> ManifestRow:
    g = case.geometry
    src = case.source_geometry or g
    vv = g.voxel_volume_ml
    p = case.provenance
    flags = set(case.qc_flags)
    if fg["tumor"].count > TUMOR_LIVER_RATIO_FLAG * fg["liver"].count and fg["liver"].count:
        flags.add("tumor_gt_1.5x_liver")
    for lab in LABELS:
        if fg[lab.name].count == 0:
            flags.add(f"missing_{lab.name}")
    kw: dict[str, Any] = {
        "case_id": case.case_id,
        "patient_id": p.patient_id,
        "study_instance_uid": p.study_instance_uid,
        "ct_series_instance_uid": p.ct_series_instance_uid,
        "ct_acquisition_number": p.ct_acquisition_number,
        "seg_sop_instance_uid": p.seg_sop_instance_uid,
        "path": case_path(case.case_id),
        "shape_zyx": tuple(g.shape),
        "spacing_zyx": tuple(g.spacing),
        "origin_lps": tuple(g.origin),
        "direction": tuple(tuple(float(v) for v in row) for row in g.direction),
        "source_shape_zyx": tuple(src.shape),
        "source_spacing_zyx": tuple(src.spacing),
        "hu_p005": hu[0],
        "hu_mean": hu[1],
        "hu_p995": hu[2],
        "split": split,
        "qc_flags": tuple(sorted(flags)),
        "warnings": tuple(case.warnings),
        "checksum": checksum,
    }
    source_counts = case.label_voxels_on_source()
    for lab in LABELS:
        cf = fg[lab.name]
        kw[f"voxels_{lab.name}"] = cf.count
        kw[f"volume_ml_{lab.name}"] = cf.count * vv
        kw[f"bbox_{lab.name}"] = cf.bbox_zyx
        kw[f"source_volume_ml_{lab.name}"] = source_counts[lab.value] * src.voxel_volume_ml
    return ManifestRow(**kw)

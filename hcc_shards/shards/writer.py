"""Write the annotations of one CT image as one OME-Zarr 0.5 image group (Zarr v3, sharded).

Format version 2 (docs/FORMAT.md). One image group per stored CT image (one CT series,
acquisition and slice block), however many SEGs annotate it; under its ``labels/`` group one label
image per annotation (case). Order of operations for one image (docs/FORMAT.md, "Atomicity and
resume"): (1) if ``complete/<image_id>.json`` exists for this version and lists exactly these
cases, return their rows (a no-op, so a resumed build skips the image); (2) remove the marker and
whatever an interrupted attempt left under the image prefix; (3) per annotation: class locations,
bounding boxes, HU statistics and the content checksum, in memory; (4) the shards of the image array
``0`` once and of each label array, each stored as it is encoded, then in one batch the documents of
the groups and the ``foreground`` arrays; (5) ``qc/<case_id>.png`` per annotation; (6) the marker
``complete/<image_id>.json`` with every manifest row. An image is complete only when its marker
exists. The marker lies outside the image group, where zarr reads nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numcodecs
import numcodecs.abc
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from hcc_shards import storage
from hcc_shards.annotation import SOURCE_MANUAL
from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.errors import FormatError
from hcc_shards.format import (
    ARRAY,
    ATTRIBUTES,
    CHUNK_KEY_PREFIX,
    FOREGROUND_GROUP,
    FORMAT_VERSION,
    IMAGE_FILL,
    IMAGE_LABEL,
    LABELS_GROUP,
    OME,
    OME_VERSION,
    PHASES_GROUP,
    array_path,
    checksum_prefix,
    image_path,
    label_path,
    marker_path,
    qc_path,
)
from hcc_shards.geometry import AXES_ZYX, Geometry
from hcc_shards.labels import LABELS
from hcc_shards.qc_rules import is_rule_flag, qc_flags
from hcc_shards.shard_index import ShardIndex, crc_bytes
from hcc_shards.shards.atomic import put_bytes_atomic, put_json_atomic, read_json
from hcc_shards.shards.foreground import ClassForeground, class_foreground
from hcc_shards.shards.manifest import ManifestRow
from hcc_shards.shards.qc import case_png

__all__ = [
    "content_checksum",
    "dice",
    "hu_stats",
    "open_store",
    "read_complete_case",
    "read_complete_image",
    "write_case",
    "write_foreground",
    "write_image",
    "write_label_array",
]


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


def read_complete_image(
    version_url: str, image_id: str, config: BuildConfig, storage_options: dict[str, Any] | None = None
) -> dict[str, ManifestRow] | None:
    """case_id -> manifest row of a complete image of this version, or None when it is not complete."""
    marker = read_json(storage.join(version_url, marker_path(image_id)), storage_options)
    if marker is None:
        return None
    if marker.get("format_version") != FORMAT_VERSION or marker.get("config_hash") != config.config_hash():
        raise FormatError(
            f"{image_id}: completion marker has format_version {marker.get('format_version')} and config_hash "
            f"{marker.get('config_hash')!r}, expected {FORMAT_VERSION} and {config.config_hash()!r}; "
            "the version directory holds another build"
        )
    return {c["case_id"]: ManifestRow.from_dict(c["row"]) for c in marker.get("cases", [])}


def read_complete_case(
    version_url: str,
    case_id: str,
    config: BuildConfig,
    storage_options: dict[str, Any] | None = None,
    *,
    image_id: str,
) -> ManifestRow | None:
    """The manifest row of ``case_id`` when its image ``image_id`` is complete, else None."""
    rows = read_complete_image(version_url, image_id, config, storage_options)
    return None if rows is None else rows.get(case_id)


def stored_histogram(
    version_url: str, row: ManifestRow, storage_options: dict[str, Any] | None = None
) -> tuple[tuple[int, int], ...]:
    """The foreground HU histogram of a stored case (a resumed case's share of the fingerprint)."""
    from hcc_shards.shards.intensity import foreground_histogram

    root = zarr.open_group(
        open_store(storage.join(version_url, row.image_path), storage_options, read_only=True), mode="r"
    )
    label = array_path(f"{LABELS_GROUP}/{row.case_id}")
    return foreground_histogram(root[ARRAY][...], root[label][...])


def write_case(
    case: Case,
    version_url: str,
    config: BuildConfig,
    storage_options: dict[str, Any] | None = None,
    *,
    split: str,
) -> ManifestRow:
    """Write ``case`` as the only annotation of its image (:func:`write_image`) and return its row."""
    return write_image([case], version_url, config, storage_options, split=split)[0]


def write_image(
    cases: Sequence[Case],
    version_url: str,
    config: BuildConfig,
    storage_options: dict[str, Any] | None = None,
    *,
    split: str,
    phases: tuple[dict[str, Any], Sequence[Any]] | None = None,
) -> list[ManifestRow]:
    """Write the annotations ``cases`` of one image per docs/FORMAT.md; their rows, in ``cases`` order.

    Every case holds the same image (same ``stored_image_id``, geometry and values): the image is
    stored once, each label once under ``labels/<case_id>``. ``phases``: (the image's own entry, the
    :class:`hcc_shards.channels.PhaseChannel` list) of a build with phases; each channel is stored
    as ``phases/<n>`` beside ``0`` and the entries as the image attribute ``phases``
    (docs/PHASES.md). None writes no phase (as a build without them).
    """
    if not cases:
        raise ValueError("write_image needs at least one case")
    first = cases[0]
    image_id = first.stored_image_id
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{image_id}: two annotations with one case id: {sorted(ids)}")
    for c in cases[1:]:
        if (
            c.stored_image_id != image_id
            or c.geometry != first.geometry
            or c.image.shape != first.image.shape
        ):
            raise ValueError(
                f"annotation {c.case_id} is on image {c.stored_image_id}, not on {image_id} with the others"
            )
    done = read_complete_image(version_url, image_id, config, storage_options)
    if done is not None and set(done) == set(ids):
        return [done[i] for i in ids]
    if config.target_spacing is not None and not np.allclose(
        first.geometry.spacing, config.target_spacing, rtol=1e-6, atol=0
    ):
        raise ValueError(
            f"{first.case_id}: case spacing {first.geometry.spacing} differs from the build's target spacing "
            f"{config.target_spacing}; resample the case first (hcc_shards.resample.resample_case)"
        )
    marker_url = storage.join(version_url, marker_path(image_id))
    fs_m, marker_fs_path = storage.filesystem(marker_url, storage_options)
    if fs_m.exists(marker_fs_path):  # another set of annotations: the image is written anew
        fs_m.rm(marker_fs_path)
    url = storage.join(version_url, image_path(image_id))
    fs, path = storage.filesystem(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)

    image_attrs = image_attributes(first, [c.case_id for c in cases], config)
    if phases is not None:
        image_attrs["phases"] = [phases[0], *(c.attrs for c in phases[1])]
    docs: dict[str, Any] = {}
    root = zarr.create_group(
        MemoryStore(docs),
        zarr_format=3,
        overwrite=True,
        attributes={OME: _ome_image(first, image_id), ATTRIBUTES: image_attrs},
    )

    def put_shard(key: str, blob: bytes) -> None:
        storage.put_objects(fs, {f"{path}/{key}": blob})

    _write_volume(root, ARRAY, first.image, IMAGE_FILL, config, put_shard)
    if phases is not None:
        phase_group = root.create_group(PHASES_GROUP)
        for n, channel in enumerate(phases[1], start=1):
            _write_volume(phase_group, str(n), channel.image, IMAGE_FILL, config, put_shard)
    labels = root.create_group(LABELS_GROUP, attributes={OME: {"version": OME_VERSION, "labels": list(ids)}})
    rows: list[ManifestRow] = []
    for case in cases:
        rows.append(_write_annotation(case, labels, image_attrs, config, split, put_shard))
    rows = _with_agreement(cases, rows)
    if phases is not None:
        rows = [_with_phases(r, image_attrs["phases"]) for r in rows]
    storage.put_objects(fs, {f"{path}/{key}": buf.to_bytes() for key, buf in docs.items()})

    for case in cases:
        title = f"{case.case_id}  {case.provenance.patient_id}  {case.annotation.source}"
        put_bytes_atomic(
            storage.join(version_url, qc_path(case.case_id)),
            case_png(
                case.image, case.label, case.geometry.spacing, title=title, direction=case.geometry.direction
            ),
            storage_options,
        )
    marker = {
        "format_version": FORMAT_VERSION,
        "image_id": image_id,
        "config_hash": config.config_hash(),
        "cases": [{"case_id": r.case_id, "checksum": r.checksum, "row": r.to_dict()} for r in rows],
    }
    put_json_atomic(marker_url, marker, storage_options)
    return rows


def _write_annotation(
    case: Case,
    labels: zarr.Group,
    image_attrs: dict[str, Any],
    config: BuildConfig,
    split: str,
    put_shard: Callable[[str, bytes], None],
) -> ManifestRow:
    annotated = set(case.annotation.annotated_labels)
    fg_all = class_foreground(
        case.label,
        case_id=case.case_id,
        seed=config.seed,
        min_samples=config.class_locations_samples,
        fraction=config.class_locations_fraction,
    )
    fg = {name: cf for name, cf in fg_all.items() if name in annotated}
    hu = _hu_stats(case.image, case.label)
    attrs = case_attributes(case, fg, config)
    checksum = content_checksum(case.image, case.label, fg, {**image_attrs, **attrs})
    row = _manifest_row(case, fg, hu, split=split, checksum=checksum)
    attrs["qc_flags"] = list(row.qc_flags)
    group = labels.create_group(case.case_id, attributes={OME: _ome_label(case), ATTRIBUTES: attrs})
    _write_volume(group, ARRAY, case.label, 0, config, put_shard)
    write_foreground(group, fg, config)
    return row


def write_foreground(group: zarr.Group, fg: dict[str, ClassForeground], config: BuildConfig) -> None:
    """The ``foreground`` group of a label image: one (N, 3) int32 array per label in ``fg``."""
    fg_group = group.create_group(FOREGROUND_GROUP)
    for name, cf in fg.items():
        arr = fg_group.create_array(
            name,
            shape=cf.locations.shape,
            dtype="int32",
            chunks=(max(1, cf.locations.shape[0]), 3),
            compressors=[ZstdCodec(level=config.compression_level), Crc32cCodec()],
            fill_value=0,
            # One dimension name per array: their lengths differ, and readers that align
            # dimensions by name (xarray) refuse one name with several lengths in a group.
            dimension_names=[f"{name}_sample", "zyx"],
        )
        if cf.locations.size:
            arr[...] = cf.locations


def _with_phases(row: ManifestRow, entries: Sequence[dict[str, Any]]) -> ManifestRow:
    """``row`` with the manifest's view of the image attribute ``phases`` (one entry per channel)."""
    return replace(
        row,
        phases=tuple(str(e["phase"]) for e in entries),
        phase_confidence=tuple(float(e["confidence"]) for e in entries),
        phase_flags=tuple(f"{n}:{flag}" for n, e in enumerate(entries) for flag in e.get("flags", ())),
    )


def _with_agreement(cases: Sequence[Case], rows: list[ManifestRow]) -> list[ManifestRow]:
    """Rows of the annotations that are not manual, with their Dice against the image's manual one."""
    manual = sorted((c for c in cases if c.annotation.source == SOURCE_MANUAL), key=lambda c: c.case_id)
    if not manual:
        return rows
    ref = manual[0]
    out = []
    for case, row in zip(cases, rows, strict=True):
        if case.annotation.source == SOURCE_MANUAL:
            out.append(row)
            continue
        both = set(case.annotation.annotated_labels) & set(ref.annotation.annotated_labels)
        dice = {
            f"dice_{lab.name}": _dice(case.label, ref.label, lab.value) for lab in LABELS if lab.name in both
        }
        out.append(replace(row, reference_case_id=ref.case_id, **dice))
    return out


def dice(a: np.ndarray, b: np.ndarray, value: int) -> float | None:
    """Dice of label ``value`` between two label arrays; None when neither holds it."""
    return _dice(a, b, value)


def _dice(a: np.ndarray, b: np.ndarray, value: int) -> float | None:
    ma, mb = a == value, b == value
    total = int(np.count_nonzero(ma)) + int(np.count_nonzero(mb))
    if total == 0:
        return None  # neither holds the label: agreement is not defined
    return 2.0 * int(np.count_nonzero(ma & mb)) / total


def image_attributes(case: Case, case_ids: Sequence[str], config: BuildConfig) -> dict[str, Any]:
    """The ``hcc_shards`` attributes of an image group (docs/FORMAT.md)."""
    src = case.source_geometry or case.geometry
    p = case.provenance
    attrs = {
        "format_version": FORMAT_VERSION,
        "image_id": case.stored_image_id,
        "config_hash": config.config_hash(),
        "geometry": _geometry_dict(case.geometry),
        "source_geometry": _geometry_dict(src),
        "labels": {str(lab.value): lab.name for lab in LABELS},
        "image_provenance": {
            "patient_id": p.patient_id,
            "study_instance_uid": p.study_instance_uid,
            "ct_series_instance_uid": p.ct_series_instance_uid,
            "ct_acquisition_number": p.ct_acquisition_number,
            "frame_of_reference_uid": p.frame_of_reference_uid,
            "ct_series_description": p.ct_series_description,
        },
        "annotations": sorted(case_ids),
    }
    if case.dicom_source is not None:
        attrs["dicom_source"] = case.dicom_source
    return attrs


def case_attributes(case: Case, fg: dict[str, ClassForeground], config: BuildConfig) -> dict[str, Any]:
    """The ``hcc_shards`` attributes of one annotation's label image (docs/FORMAT.md)."""
    annotation = case.annotation.to_dict()
    return {
        "format_version": FORMAT_VERSION,
        "case_id": case.case_id,
        "image_id": case.stored_image_id,
        "config_hash": config.config_hash(),
        "annotated_labels": list(case.annotation.annotated_labels),
        "annotation": {k: v for k, v in annotation.items() if k != "annotated_labels"},
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
    """sha256 of the decoded content: image (int16 LE), label, locations (int32 LE), attributes JSON.

    ``attrs`` are the image group's ``hcc_shards`` attributes updated with the label image's."""
    h = hashlib.sha256(checksum_prefix(FORMAT_VERSION))
    h.update(np.ascontiguousarray(image, dtype="<i2").data)
    h.update(np.ascontiguousarray(label, dtype=np.uint8).data)
    for lab in LABELS:  # a label the annotation does not define has no locations (nothing hashed)
        if lab.name in fg:
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


def write_label_array(
    group: zarr.Group, label: np.ndarray, config: BuildConfig, put: Callable[[str, bytes], None]
) -> None:
    """The uint8 label array ``0`` of a label image group, sharded and encoded as the build writes it;
    ``put(key, blob)`` stores each shard object (key relative to ``group``'s store root)."""
    _write_volume(group, "0", label, 0, config, put)


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
        index = ShardIndex.empty(n_chunks)
        parts: list[bytes] = []
        offset = ShardIndex.nbytes(n_chunks)
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
            parts.append(encoded + crc_bytes(encoded))
            index.set_chunk(k, offset, len(parts[-1]))
            offset += len(parts[-1])
        if not parts:
            continue
        blob = b"".join([index.to_bytes(), *parts])
        put("/".join([arr.path, CHUNK_KEY_PREFIX, *(str(i) for i in shard)]), blob)


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
                    "path": ARRAY,
                    "coordinateTransformations": [
                        {"type": "scale", "scale": list(g.spacing)},
                        {"type": "translation", "translation": translation},
                    ],
                }
            ],
        }
    ]


def _ome_image(case: Case, image_id: str) -> dict[str, Any]:
    return {"version": OME_VERSION, "multiscales": _multiscales(case, image_id)}


def _ome_label(case: Case) -> dict[str, Any]:
    return {
        "version": OME_VERSION,
        "multiscales": _multiscales(case, case.case_id),
        IMAGE_LABEL: {
            "colors": [{"label-value": lab.value, "rgba": list(lab.rgba)} for lab in LABELS],
            "properties": [
                {"label-value": lab.value, "name": lab.name, "display": lab.display} for lab in LABELS
            ],
            "source": {"image": "../../"},
        },
    }


def hu_stats(image: np.ndarray, label: np.ndarray) -> tuple[float, float, float]:
    """The manifest's ``hu_p005``, ``hu_mean`` and ``hu_p995`` of ``label`` over ``image``."""
    return _hu_stats(image, label)


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
    # The rules are decided again on the stored labels, whose counts the manifest reports.
    flags = {f for f in case.qc_flags if not is_rule_flag(f)}
    flags.update(qc_flags({name: cf.count for name, cf in fg.items()}, annotated=fg.keys()))
    a = case.annotation
    image_id = case.stored_image_id
    kw: dict[str, Any] = {
        "case_id": case.case_id,
        "patient_id": p.patient_id,
        "study_instance_uid": p.study_instance_uid,
        "ct_series_instance_uid": p.ct_series_instance_uid,
        "ct_acquisition_number": p.ct_acquisition_number,
        "seg_sop_instance_uid": p.seg_sop_instance_uid,
        "path": label_path(image_id, case.case_id),
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
        "image_id": image_id,
        "image_path": image_path(image_id),
        "annotation_source": a.source,
        "segment_algorithm_type": a.segment_algorithm_type,
        "seg_series_description": a.seg_series_description,
        "seg_manufacturer": a.seg_manufacturer,
        "content_creator": a.content_creator,
        "analysis_result_id": a.analysis_result_id,
        "annotated_labels": tuple(a.annotated_labels),
        "seg_series_instance_uid": p.seg_series_instance_uid,
    }
    source_counts = case.label_voxels_on_source()
    for lab in LABELS:
        cf = fg.get(lab.name)  # None: the annotation does not define the label (null, never 0)
        kw[f"voxels_{lab.name}"] = None if cf is None else cf.count
        kw[f"volume_ml_{lab.name}"] = None if cf is None else cf.count * vv
        kw[f"bbox_{lab.name}"] = None if cf is None else cf.bbox_zyx
        kw[f"source_volume_ml_{lab.name}"] = (
            None if cf is None else source_counts[lab.value] * src.voxel_volume_ml
        )
    return ManifestRow(**kw)

"""Open a dataset written per docs/FORMAT.md: its manifest, its cases and their arrays.

Order of operations of :func:`open_dataset`: 1. resolve the version (``version=``, a version root
holding ``dataset.json``, or ``LATEST.json``), 2. read and check ``dataset.json``, 3. read and check
``manifest.parquet``, 4. list ``predictions/`` and append the rows of every prediction table (format
2), 5. join ``clinical.parquet`` when dataset.json names it. Nothing else is read until a case is
used: a case's ``zarr.json`` files are fetched on first access, its chunks only when a region is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hcc_shards.annotation import SOURCE_PREDICTION
from hcc_shards.errors import FormatError
from hcc_shards.format import (
    ARRAY,
    ATTRIBUTES,
    DATASET_FILE,
    FORMAT_VERSION,
    IMAGE_FILL,
    LATEST_FILE,
    MANIFEST_FILE,
    READABLE_VERSIONS,
    V1_LABEL_ARRAY,
    ZARR_JSON,
    foreground_path,
    metadata_path,
    version_path,
)
from hcc_shards.geometry import Geometry
from hcc_shards.labels import LABELS
from hcc_shards.prediction_names import PREDICTIONS_DIR, name_of_table, prediction_table_path
from hcc_shards.read.array import FetchedRegions, LazyArray, RegionRequest, ShardIndexCache, fetch_regions
from hcc_shards.read.chunks import parse_array_meta
from hcc_shards.read.io import ByteStore, IOSettings

IMAGE_PAD = IMAGE_FILL
"""Value of image voxels outside the volume (air, in HU)."""
LABEL_PAD = 0
"""Value of label voxels outside the volume (background)."""

_REQUIRED_COLUMNS = ("case_id", "path", "shape_zyx", "split")


@dataclass(frozen=True)
class DatasetInfo:
    """Dataset-level facts from ``dataset.json``."""

    format_version: int
    """On-disk format version (docs/FORMAT.md)."""
    version: str
    """Dataset version id: the build's config hash."""
    name: str
    """Dataset name."""
    labels: tuple[tuple[int, str], ...]
    """Foreground label (value, name) pairs, by value."""
    target_spacing_zyx: tuple[float, float, float] | None
    """Voxel spacing every case was resampled to, when the build recorded one."""
    raw: dict[str, Any]
    """The whole ``dataset.json`` document."""


def open_dataset(
    url: str,
    storage_options: dict[str, Any] | None = None,
    version: str | None = None,
    *,
    io_settings: IOSettings | None = None,
    predictions: bool = True,
) -> Dataset:
    """Open the dataset at ``url`` (a build output, or one ``versions/<hash>`` folder of it).

    ``version`` picks ``versions/<version>`` instead of following ``LATEST.json``. The rows of the
    version's prediction sets (``annotation_source == "prediction"``, docs/FORMAT.md "Predictions")
    follow the manifest's; ``predictions=False`` leaves them out without listing them, as does
    ``ds.filter(annotation_source=[...])`` afterwards.
    Raises FormatError when the pointer, ``dataset.json`` or the manifest break docs/FORMAT.md.
    """
    top = ByteStore(url, storage_options, io_settings)
    if version is not None:
        root = top.with_root(version_path(version))
    elif top.read(DATASET_FILE) is not None:
        root = top
    else:
        raw = top.read(LATEST_FILE)
        if raw is None:
            raise FormatError(
                f"{top.url('')}: neither {LATEST_FILE} nor {DATASET_FILE} found; "
                "is this a hcc-shards build output?"
            )
        latest = _json(raw, top.url(LATEST_FILE))
        _check_version(latest, top.url(LATEST_FILE))
        path = latest.get("path")
        if not isinstance(path, str) or not path:
            raise FormatError(f"{top.url(LATEST_FILE)}: expected a non-empty 'path' string, got {path!r}")
        root = top.with_root(path)
    raw_ds = root.read(DATASET_FILE)
    if raw_ds is None:
        raise FormatError(f"{root.url(DATASET_FILE)}: missing; the version is not committed")
    info = _parse_dataset_json(_json(raw_ds, root.url(DATASET_FILE)), root.url(DATASET_FILE))
    raw_manifest = root.read(MANIFEST_FILE)
    if raw_manifest is None:
        raise FormatError(f"{root.url(MANIFEST_FILE)}: missing")
    manifest = _parse_manifest(raw_manifest, root.url(MANIFEST_FILE), info.format_version)
    if predictions and info.format_version != 1:
        manifest = with_predictions(root, manifest)
    clinical_path = (
        (info.raw.get("clinical") or {}).get("path") if isinstance(info.raw.get("clinical"), dict) else None
    )
    if isinstance(clinical_path, str) and clinical_path:
        raw_clinical = root.read(clinical_path)
        if raw_clinical is None:
            raise FormatError(f"{root.url(clinical_path)}: missing ({DATASET_FILE} names it)")
        manifest = with_clinical(manifest, _parse_clinical(raw_clinical, root.url(clinical_path)))
    return Dataset(root, info, manifest)


def with_predictions(root: ByteStore, manifest: pa.Table) -> pa.Table:
    """The manifest followed by the rows of every ``predictions/<name>.parquet`` of the version, by name.

    Each table must hold the manifest's columns and only rows of source ``prediction``; its case ids
    must be new. A table that is not listed (or not yet written) is not there: its label images are
    invisible, as a case without a manifest row is."""
    tables = [manifest]
    for file_name in root.list_names(PREDICTIONS_DIR):
        name = name_of_table(file_name)
        if name is None:
            continue
        rel = prediction_table_path(name)
        raw = root.read(rel)
        if raw is None:  # removed since it was listed
            continue
        where = root.url(rel)
        table = _parse_manifest(raw, where)
        missing = [c for c in (*manifest.column_names, "annotation_source") if c not in table.column_names]
        if missing:
            raise FormatError(f"{where}: missing the manifest's columns {missing}")
        sources = set(table.column("annotation_source").to_pylist())
        if sources - {SOURCE_PREDICTION}:
            raise FormatError(
                f"{where}: every row must have annotation_source {SOURCE_PREDICTION!r}, got {sorted(sources)}"
            )
        try:
            tables.append(table.select(manifest.column_names).cast(manifest.schema))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise FormatError(f"{where}: columns do not match the manifest's types ({exc})") from exc
    if len(tables) == 1:
        return manifest
    out = pa.concat_tables(tables)
    ids = out.column("case_id").to_pylist()
    if len(set(ids)) != len(ids):
        dup = sorted({c for c in ids if ids.count(c) > 1})
        raise FormatError(
            f"{root.url(PREDICTIONS_DIR)}: case ids also in the manifest or another set: {dup[:5]}"
        )
    return out


CLINICAL_PREFIX = "clinical."
"""Prefix of a clinical column whose name is already a manifest column."""


def _parse_clinical(raw: bytes, where: str) -> pa.Table:
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"{where}: not a readable parquet file ({exc})") from exc
    if not table.column_names or table.column_names[0] != "patient_id":
        raise FormatError(f"{where}: first column must be 'patient_id', got {table.column_names[:1]}")
    return table


def with_clinical(manifest: pa.Table, clinical: pa.Table) -> pa.Table:
    """The manifest with the clinical columns appended, joined on ``patient_id`` (manifest order kept;
    null where a patient has no row). A clinical column named like a manifest column gets
    :data:`CLINICAL_PREFIX`. ``ds.filter(pc.field("TTP") > 100)`` then filters by clinical values."""
    row_of = {p: i for i, p in enumerate(clinical.column("patient_id").to_pylist())}
    take = pa.array([row_of.get(p) for p in manifest.column("patient_id").to_pylist()], type=pa.int64())
    out = manifest
    for name in clinical.column_names[1:]:
        shown = f"{CLINICAL_PREFIX}{name}" if name in manifest.column_names else name
        out = out.append_column(shown, clinical.column(name).take(take))
    return out


def _json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _check_version(doc: dict[str, Any], where: str) -> None:
    got = doc.get("format_version")
    if got not in READABLE_VERSIONS:
        raise FormatError(
            f"{where}: format_version {got!r} is not supported; this reader reads versions "
            f"{' and '.join(str(v) for v in READABLE_VERSIONS)}"
        )


def _parse_dataset_json(doc: dict[str, Any], where: str) -> DatasetInfo:
    _check_version(doc, where)
    version = doc.get("config_hash")
    if not isinstance(version, str) or not version:
        raise FormatError(f"{where}: expected a non-empty 'config_hash' string, got {version!r}")
    labels_doc = doc.get("labels")
    if labels_doc is None:
        labels = tuple((lab.value, lab.name) for lab in LABELS)
    else:
        try:
            labels = tuple(sorted((int(d["value"]), str(d["name"])) for d in labels_doc))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(
                f"{where}: 'labels' must be a list of {{value, name, ...}} objects, got {labels_doc!r}"
            ) from exc
        labels = tuple(lab for lab in labels if lab[0] != 0)
    spacing = doc.get("target_spacing_zyx")
    try:
        target = None if spacing is None else tuple(float(v) for v in spacing)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{where}: target_spacing_zyx must be 3 numbers, got {spacing!r}") from exc
    if target is not None and len(target) != 3:
        raise FormatError(f"{where}: target_spacing_zyx must be 3 numbers, got {spacing!r}")
    return DatasetInfo(
        format_version=int(doc["format_version"]),
        version=version,
        name=str(doc.get("name", "")),
        labels=labels,
        target_spacing_zyx=target,  # type: ignore[arg-type]
        raw=doc,
    )


def _parse_manifest(raw: bytes, where: str, format_version: int = FORMAT_VERSION) -> pa.Table:
    try:
        table = pq.read_table(io.BytesIO(raw))
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"{where}: not a readable parquet file ({exc})") from exc
    required = _REQUIRED_COLUMNS if format_version == 1 else (*_REQUIRED_COLUMNS, "image_path")
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise FormatError(f"{where}: missing columns {missing}; found {table.column_names}")
    ids = table.column("case_id").to_pylist()
    if any(not isinstance(c, str) or not c for c in ids):
        raise FormatError(f"{where}: every case_id must be a non-empty string")
    if len(set(ids)) != len(ids):
        dup = sorted({c for c in ids if ids.count(c) > 1})
        raise FormatError(f"{where}: duplicate case_id values {dup[:5]}")
    for i, shape in enumerate(table.column("shape_zyx").to_pylist()):
        if not isinstance(shape, list) or len(shape) != 3 or any(int(s) < 1 for s in shape):
            raise FormatError(
                f"{where}: row {i} ({ids[i]}): shape_zyx must be 3 positive ints, got {shape!r}"
            )
    return table


class Dataset:
    """A committed dataset version: manifest, label names, and cases by id.

    Cheap to pickle: workers rebuild their caches and storage clients on first use.
    """

    def __init__(self, store: ByteStore, info: DatasetInfo, manifest: pa.Table) -> None:
        self.store = store
        """Store rooted at the version folder."""
        self.info = info
        """Facts from ``dataset.json``."""
        self.manifest = manifest
        """One row per case (docs/FORMAT.md columns), as a pyarrow Table."""
        self._ids: tuple[str, ...] = tuple(manifest.column("case_id").to_pylist())
        self._row_of = {cid: i for i, cid in enumerate(self._ids)}
        self._shapes = np.asarray(manifest.column("shape_zyx").to_pylist(), dtype=np.int64).reshape(-1, 3)
        self._cases: dict[str, Case] = {}
        self._lock = threading.Lock()
        self._index_cache = ShardIndexCache()

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "info": self.info, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"], state["info"], state["manifest"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Dataset({self.store.root_url!r}, version={self.version!r}, cases={len(self)})"

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[Case]:
        return (self.case(cid) for cid in self._ids)

    @property
    def version(self) -> str:
        """Dataset version id (the build's config hash)."""
        return self.info.version

    @property
    def case_ids(self) -> tuple[str, ...]:
        """Case ids, in manifest order."""
        return self._ids

    @property
    def shapes(self) -> np.ndarray:
        """(cases, 3) int64 volume shapes (z, y, x), from the manifest (no I/O)."""
        return self._shapes

    @property
    def label_names(self) -> dict[int, str]:
        """Foreground label value -> name."""
        return dict(self.info.labels)

    def fingerprint(self) -> str:
        """16 hex digits naming this version and this exact list of cases (for resume checks)."""
        blob = json.dumps([self.version, list(self._ids)]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def filter(self, expression: pc.Expression | None = None, **equals: Any) -> Dataset:
        """The dataset restricted to manifest rows matching every condition.

        ``equals`` maps a column to a value or a list of accepted values, e.g.
        ``ds.filter(split="train")``; ``expression`` is any pyarrow compute expression, e.g.
        ``pc.field("voxels_tumor") > 0``.
        """
        table = self.manifest
        for column, value in equals.items():
            if column not in table.column_names:
                raise KeyError(f"no manifest column {column!r}; columns are {table.column_names}")
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            table = table.filter(pc.is_in(table.column(column), value_set=pa.array(values)))
        if expression is not None:
            table = table.filter(expression)
        out = Dataset(self.store, self.info, table)
        out._index_cache = self._index_cache
        return out

    def case(self, case_id: str) -> Case:
        """The case ``case_id``; KeyError when the manifest has no such row."""
        case = self._cases.get(case_id)
        if case is not None:
            return case
        row = self._row_of.get(case_id)
        if row is None:
            raise KeyError(f"no case {case_id!r} in the manifest of {self!r}")
        with self._lock:
            case = self._cases.get(case_id)
            if case is None:
                record = {k: v[0] for k, v in self.manifest.slice(row, 1).to_pydict().items()}
                case = self._cases[case_id] = Case(self, case_id, record)
        return case

    def row(self, case_id: str) -> int:
        """Position of ``case_id`` in the manifest."""
        return self._row_of[case_id]


class Case:
    """One case: lazy image and label arrays, geometry, metadata and foreground locations."""

    def __init__(self, dataset: Dataset, case_id: str, record: dict[str, Any]) -> None:
        self.dataset = dataset
        self.case_id = case_id
        """Case id (the manifest's ``case_id``)."""
        self.metadata: dict[str, Any] = record
        """The case's manifest row (column -> value)."""
        self._opened: tuple[dict[str, Any], LazyArray, LazyArray] | None = None
        self._channels: dict[int, LazyArray] = {}
        self._foreground: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Case({self.case_id!r}, shape={tuple(self.metadata['shape_zyx'])})"

    @property
    def path(self) -> str:
        """The case's group relative to the version root: its label image (format 2), its case group (1)."""
        return str(self.metadata["path"]).strip("/")

    @property
    def image_path(self) -> str:
        """The group of the case's CT image relative to the version root (shared by its annotations)."""
        if self.dataset.info.format_version == 1:
            return self.path
        return str(self.metadata["image_path"]).strip("/")

    @property
    def image_id(self) -> str:
        """Id of the stored CT image (format 1: the case id, one image per case)."""
        return str(self.metadata.get("image_id") or self.case_id)

    @property
    def annotated_labels(self) -> tuple[str, ...]:
        """Names of the labels this annotation defines, in label order. A label it does not define is
        unknown in its label array (not background): mask it out of the loss. Format 1: all labels."""
        names = [n for _, n in self.dataset.info.labels]
        given = self.metadata.get("annotated_labels")
        if given is None:
            return tuple(names)
        return tuple(n for n in names if n in set(given))

    @property
    def annotation_source(self) -> str:
        """``manual``, ``ai``, ``ai_corrected`` or ``unknown`` (format 1: ``unknown``); ``prediction``
        for a row of a prediction set (its ``reference_case_id`` is the case it was predicted for)."""
        return str(self.metadata.get("annotation_source") or "unknown")

    def _rels(self) -> tuple[list[str], str]:
        """(zarr.json documents: group(s), image array, label array; label array folder)."""
        if self.dataset.info.format_version == 1:
            return [
                metadata_path(self.path),
                metadata_path(f"{self.path}/{ARRAY}"),
                metadata_path(f"{self.path}/{V1_LABEL_ARRAY}"),
            ], ""
        return [
            metadata_path(self.image_path),
            metadata_path(f"{self.image_path}/{ARRAY}"),
            metadata_path(f"{self.path}/{ARRAY}"),
        ], metadata_path(self.path)

    def _open(self) -> tuple[dict[str, Any], LazyArray, LazyArray]:
        if self._opened is not None:
            return self._opened
        with self._lock:
            if self._opened is None:
                store = self.dataset.store
                rels, label_group = self._rels()
                wanted = [*rels, label_group] if label_group else rels
                docs = []
                for rel, raw in zip(wanted, store.read_many(wanted), strict=True):
                    if raw is None:
                        raise FormatError(f"case {self.case_id!r}: {store.url(rel)} is missing")
                    docs.append(_json(raw, store.url(rel)))
                attrs = (docs[0].get("attributes") or {}).get(ATTRIBUTES)
                if not isinstance(attrs, dict):
                    raise FormatError(
                        f"case {self.case_id!r}: {store.url(rels[0])} has no {ATTRIBUTES!r} attributes"
                    )
                _check_version(attrs, store.url(rels[0]))
                if label_group:
                    label_attrs = (docs[3].get("attributes") or {}).get(ATTRIBUTES)
                    if not isinstance(label_attrs, dict):
                        raise FormatError(
                            f"case {self.case_id!r}: {store.url(label_group)} has no {ATTRIBUTES!r} attributes"
                        )
                    # One dict: the image's attributes, updated with the annotation's (docs/FORMAT.md).
                    attrs = {**attrs, **label_attrs}
                arrays = []
                for rel, doc, kind in zip(rels[1:], docs[1:3], ("image", "label"), strict=True):
                    meta = parse_array_meta(doc, where=store.url(rel))
                    if len(meta.shape) != 3:
                        raise FormatError(f"{store.url(rel)}: expected a 3-d array, got shape {meta.shape}")
                    arrays.append(
                        LazyArray(
                            store,
                            rel.rsplit("/", 1)[0],
                            meta,
                            name=f"case {self.case_id!r} {kind}",
                            index_cache=self.dataset._index_cache,
                        )
                    )
                if arrays[0].shape != arrays[1].shape:
                    raise FormatError(
                        f"case {self.case_id!r}: image shape {arrays[0].shape} != label shape {arrays[1].shape}"
                    )
                self._opened = (attrs, arrays[0], arrays[1])
        return self._opened  # type: ignore[return-value]

    @property
    def attributes(self) -> dict[str, Any]:
        """The ``hcc_shards`` attributes of the case group (docs/FORMAT.md)."""
        return self._open()[0]

    @property
    def image(self) -> LazyArray:
        """int16 HU volume (z, y, x)."""
        return self._open()[1]

    @property
    def label(self) -> LazyArray:
        """uint8 label volume (z, y, x)."""
        return self._open()[2]

    @property
    def phases(self) -> list[dict[str, Any]]:
        """The image's phase channels (docs/PHASES.md): entry 0 is the annotated image itself (array
        ``0``), entries 1.. the study's other acquisitions on its grid (``phases/<n>``). Each has
        ``phase``, ``confidence``, ``evidence``, ``coverage``, ``flags``. Empty for a build without
        phases."""
        entries = self.attributes.get("phases")
        return list(entries) if isinstance(entries, list) else []

    def channel(self, index: int) -> LazyArray:
        """int16 HU volume of channel ``index`` of :attr:`phases` (0: :attr:`image`), on the image's grid;
        voxels outside the acquisition's field read -1024."""
        if index == 0:
            return self.image
        cached = self._channels.get(index)
        if cached is not None:
            return cached
        entries = self.phases
        if not 0 < index < len(entries):
            raise KeyError(f"case {self.case_id!r} has {len(entries) or 1} channel(s); no channel {index}")
        store = self.dataset.store
        rel = f"{self.image_path}/{entries[index]['array']}"
        raw = store.read(f"{rel}/{ZARR_JSON}")
        if raw is None:
            raise FormatError(f"case {self.case_id!r}: {store.url(f'{rel}/{ZARR_JSON}')} is missing")
        meta = parse_array_meta(_json(raw, store.url(f"{rel}/{ZARR_JSON}")), where=store.url(rel))
        if tuple(meta.shape) != self.image.shape:
            raise FormatError(f"{store.url(rel)}: shape {meta.shape} != image shape {self.image.shape}")
        arr = LazyArray(
            store,
            rel,
            meta,
            name=f"case {self.case_id!r} channel {index}",
            index_cache=self.dataset._index_cache,
        )
        self._channels[index] = arr
        return arr

    def channel_for(self, phase: str) -> int | None:
        """Index of the channel assigned ``phase`` (the annotated image first, then the most confident
        one); None when no channel has it."""
        hits = [
            (i != 0, -float(e.get("confidence") or 0.0), i)
            for i, e in enumerate(self.phases)
            if e.get("phase") == phase
        ]
        return min(hits)[2] if hits else None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape (z, y, x), from the manifest (no I/O)."""
        return tuple(int(s) for s in self.metadata["shape_zyx"])  # type: ignore[return-value]

    @property
    def geometry(self) -> Geometry:
        """Voxel grid of the case in LPS."""
        geo = self.attributes.get("geometry")
        try:
            if isinstance(geo, dict) and "affine" in geo:
                return Geometry(shape=tuple(geo["shape_zyx"]), affine=np.asarray(geo["affine"]))
            return Geometry.from_dict(geo)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"case {self.case_id!r}: malformed geometry attribute {geo!r} ({exc})") from exc

    def foreground_counts(self) -> dict[str, int]:
        """Voxels per annotated label name (0 for an absent label); from the attributes.

        Labels the annotation does not define are left out: they are unknown, not empty."""
        fg = self.attributes.get("foreground") or {}
        out = {}
        for name in self.annotated_labels:
            entry = fg.get(name)
            out[name] = int(entry.get("count", 0)) if isinstance(entry, dict) else 0
        return out

    def foreground(self, name: str) -> np.ndarray:
        """int32 (N, 3) stored voxel indices (z, y, x) of label ``name`` (N may be 0)."""
        cached = self._foreground.get(name)
        if cached is not None:
            return cached
        if name not in dict((n, v) for v, n in self.dataset.info.labels):
            raise KeyError(f"no label {name!r}; labels are {[n for _, n in self.dataset.info.labels]}")
        store = self.dataset.store
        rel = foreground_path(self.path, name)
        raw = store.read(metadata_path(rel))
        if raw is None:
            locations = np.zeros((0, 3), dtype=np.int32)
        else:
            meta = parse_array_meta(_json(raw, store.url(metadata_path(rel))), where=store.url(rel))
            if len(meta.shape) != 2 or meta.shape[1] != 3:
                raise FormatError(f"{store.url(rel)}: expected shape (N, 3), got {meta.shape}")
            arr = LazyArray(
                store,
                rel,
                meta,
                name=f"case {self.case_id!r} foreground {name}",
                index_cache=self.dataset._index_cache,
            )
            locations = arr.read((0, 0), meta.shape).astype(np.int32, copy=False)
        self._foreground[name] = locations
        return locations

    def read_region(
        self,
        start: Sequence[int],
        stop: Sequence[int],
        *,
        image_pad: int = IMAGE_PAD,
        label_pad: int = LABEL_PAD,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(image, label) of ``[start, stop)`` (z, y, x), padded outside the volume, in one batch of reads."""
        image, label = self.fetch_region(start, stop, image_pad=image_pad, label_pad=label_pad).assemble()
        return image, label

    def fetch_region(
        self,
        start: Sequence[int],
        stop: Sequence[int],
        *,
        image_pad: int = IMAGE_PAD,
        label_pad: int = LABEL_PAD,
        channels: Sequence[int] = (),
    ) -> FetchedRegions:
        """The I/O half of :meth:`read_region`: the stored bytes of image and label, fetched in one batch.

        ``.assemble()`` on the result verifies, decodes and returns ``(image, label)`` (CPU only), so a
        background thread can fetch the next region while the caller decodes this one. ``channels``:
        indices into :attr:`phases` (not 0) whose regions follow, in that order, in the same batch.
        """
        return fetch_regions(
            [
                RegionRequest(self.image, tuple(start), tuple(stop), image_pad),
                RegionRequest(self.label, tuple(start), tuple(stop), label_pad),
                *(RegionRequest(self.channel(i), tuple(start), tuple(stop), image_pad) for i in channels),
            ]
        )


__all__ = [
    "CLINICAL_PREFIX",
    "FORMAT_VERSION",
    "IMAGE_PAD",
    "LABEL_PAD",
    "READABLE_VERSIONS",
    "Case",
    "Dataset",
    "DatasetInfo",
    "open_dataset",
    "with_clinical",
    "with_predictions",
]

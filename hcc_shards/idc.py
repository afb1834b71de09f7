"""``idc://COLLECTION``: a collection of NCI Imaging Data Commons, resolved offline from its index.

The index is the parquet table shipped in the package ``idc-index-data`` (the ``idc`` extra; it is
large and stays out of the reader install). One row per DICOM series gives the series' prefix in
IDC's public buckets (``s3://idc-open-data/<crdc_series_uuid>/``, also on ``gs://``), its
instance count, size and, for derived series, the IDC analysis result it belongs to. Resolving
reads that local file only: no network, no credentials.

URL grammar (query parameters are optional; several values are separated by commas or ``+``, or
the key is repeated)::

    idc://hcc_tace_seg
    idc://hcc_tace_seg?analysis=none                 # original series only (no analysis results)
    idc://hcc_tace_seg?analysis=bamf_aimi_annotations  # original series + the named result(s)
    idc://hcc_tace_seg?patients=HCC_001,HCC_002&modalities=CT,SEG
    idc://hcc_tace_seg?protocol=gs                   # gs://idc-open-data/... instead of s3://

``analysis`` is ``all`` (default), ``none``, or analysis result ids. A patient or modality the
index does not hold for the collection is an error that names it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hcc_shards.errors import ConfigError

SCHEME = "idc"
"""``idc://``: an INPUT entry resolved through the IDC index."""
PREFIX = f"{SCHEME}://"
PROTOCOLS: tuple[str, ...] = ("s3", "gs")
"""Bucket protocols IDC serves the same objects on (s3 first: the default)."""
ANONYMOUS_OPTIONS: dict[str, dict[str, Any]] = {"s3": {"anon": True}, "gs": {"token": "anon"}}
"""fsspec options for IDC's public buckets when the user gives no credentials of their own."""
SEG_MODALITY = "SEG"
ANALYSIS_ALL = "all"
ANALYSIS_NONE = "none"
COLUMNS: tuple[str, ...] = (
    "collection_id",
    "analysis_result_id",
    "PatientID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "instanceCount",
    "series_size_MB",
    "crdc_series_uuid",
    "series_aws_url",
)
"""Index columns read (IDC's own names); the CSV in tests holds the same ones."""
_QUERY_KEYS = frozenset({"analysis", "patients", "modalities", "protocol"})


@dataclass(frozen=True)
class IdcSeries:
    """One row of the IDC index: a DICOM series and where IDC keeps it."""

    patient_id: str
    study_instance_uid: str
    study_date: str
    """YYYY-MM-DD as the index writes it."""
    study_description: str
    series_instance_uid: str
    series_number: int | None
    series_description: str
    """Empty when the series has none."""
    modality: str
    analysis_result_id: str
    """IDC analysis result the series belongs to; empty for the collection's original series."""
    instance_count: int
    size_bytes: int
    """``series_size_MB`` x 10^6."""
    crdc_series_uuid: str
    """The series' folder in the bucket."""
    bucket: str
    """Bucket name (``idc-open-data``)."""

    def prefix(self, protocol: str = "s3") -> str:
        """``<protocol>://<bucket>/<crdc_series_uuid>``: the prefix that holds the series' instances."""
        return f"{protocol}://{self.bucket}/{self.crdc_series_uuid}"


@dataclass(frozen=True)
class IdcQuery:
    """A parsed ``idc://`` URL."""

    collection: str
    analysis: tuple[str, ...] = (ANALYSIS_ALL,)
    """``("all",)``, ``("none",)`` or analysis result ids (kept with the original series)."""
    patients: tuple[str, ...] = ()
    """PatientIDs to keep; empty keeps all."""
    modalities: tuple[str, ...] = ()
    """Modalities to keep (upper case); empty keeps all."""
    protocol: str = "s3"
    """'s3' or 'gs'."""

    def keeps(self, series: IdcSeries) -> bool:
        if self.patients and series.patient_id not in self.patients:
            return False
        if self.modalities and series.modality.upper() not in self.modalities:
            return False
        if not series.analysis_result_id or self.analysis == (ANALYSIS_ALL,):
            return True
        return self.analysis != (ANALYSIS_NONE,) and series.analysis_result_id in self.analysis


@dataclass(frozen=True)
class IndexVersion:
    """Which IDC index resolved a collection (recorded in dataset.json)."""

    package: str
    """``idc-index-data`` version, or the path of the table when another file was given."""
    idc_release: int | None
    """IDC data release (``v25`` -> 25), from the index's version table; None when unknown."""

    def to_dict(self) -> dict[str, Any]:
        return {"idc_index_data": self.package, "idc_release": self.idc_release}


@dataclass(frozen=True)
class IdcSelection:
    """The series an ``idc://`` URL names, and the totals the plan reports before reading anything."""

    url: str
    """The URL as given."""
    query: IdcQuery
    series: tuple[IdcSeries, ...]
    """Sorted by (PatientID, StudyInstanceUID, SeriesInstanceUID)."""
    version: IndexVersion
    analysis_results: tuple[tuple[str, str], ...] = field(default=())
    """(SeriesInstanceUID, analysis_result_id) of every selected series that belongs to an IDC
    analysis result, sorted; original series are absent."""

    def prefixes(self) -> tuple[str, ...]:
        return tuple(s.prefix(self.query.protocol) for s in self.series)

    def totals(self) -> dict[str, Any]:
        """Counts from the index alone: patients, studies, series, SEGs, instances, bytes."""
        segs = [s for s in self.series if s.modality.upper() == SEG_MODALITY]
        by_result = Counter(s.analysis_result_id or "original" for s in segs)
        return {
            "patients": len({s.patient_id for s in self.series}),
            "studies": len({s.study_instance_uid for s in self.series}),
            "series": len(self.series),
            "segs": len(segs),
            "segs_by_analysis_result": dict(sorted(by_result.items())),
            "instances": sum(s.instance_count for s in self.series),
            "bytes": sum(s.size_bytes for s in self.series),
        }

    def record(self) -> dict[str, Any]:
        """The plan's ``index`` record (docs/FORMAT.md "Plan records") and dataset.json's ``input_index``."""
        return {"kind": "index", "source": self.url, **self.totals(), **self.version.to_dict()}


def is_idc_url(entry: str) -> bool:
    return entry.strip().lower().startswith(PREFIX)


def parse_url(url: str) -> IdcQuery:
    """``idc://collection?key=value&...`` -> :class:`IdcQuery`; unknown keys or values are errors."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != SCHEME:
        raise ConfigError(f"{url!r} is not an idc:// URL")
    collection = (parts.netloc + parts.path).strip("/").lower()
    if not collection or "/" in collection:
        raise ConfigError(f"{url!r}: expected idc://<collection_id>, e.g. idc://hcc_tace_seg")
    raw = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(raw) - _QUERY_KEYS)
    if unknown:
        raise ConfigError(f"{url!r}: unknown query keys {unknown}; expected some of {sorted(_QUERY_KEYS)}")

    def values(key: str) -> tuple[str, ...]:
        found = [
            v.strip()
            for item in raw.get(key, [])
            for v in item.replace("+", ",").replace(" ", ",").split(",")
        ]
        return tuple(dict.fromkeys(v for v in found if v))

    analysis = values("analysis") or (ANALYSIS_ALL,)
    if len(analysis) > 1 and ({ANALYSIS_ALL, ANALYSIS_NONE} & set(analysis)):
        raise ConfigError(f"{url!r}: analysis is 'all', 'none' or analysis result ids, got {list(analysis)}")
    protocol = (values("protocol") or ("s3",))[0].lower()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{url!r}: protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    return IdcQuery(
        collection=collection,
        analysis=analysis,
        patients=values("patients"),
        modalities=tuple(m.upper() for m in values("modalities")),
        protocol=protocol,
    )


def default_index_path() -> Path:
    """The parquet index of the installed ``idc-index-data``; a clear error when it is missing."""
    try:
        import idc_index_data
    except ImportError as e:
        raise ConfigError(
            "idc:// needs the IDC index: pip install 'hcc-shards[idc]' (the package idc-index-data)"
        ) from e
    return Path(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)


def index_version(index_path: Path | None = None) -> IndexVersion:
    """The idc-index-data version and IDC release of ``index_path`` (default: the installed index)."""
    if index_path is not None and index_path != default_index_path():
        return IndexVersion(package=str(index_path), idc_release=None)
    import idc_index_data
    import pyarrow.parquet as pq

    release = None
    table_path = Path(idc_index_data.IDC_INDEX_PARQUET_FILEPATH).parent / "version_metadata_index.parquet"
    if table_path.exists():
        versions = pq.read_table(table_path, columns=["idc_version"]).column(0).to_pylist()
        release = max((int(v) for v in versions if v is not None), default=None)
    return IndexVersion(package=str(idc_index_data.__version__), idc_release=release)


@functools.lru_cache(maxsize=8)
def collection_series(collection: str, index_path: str | None = None) -> tuple[IdcSeries, ...]:
    """Every series of ``collection`` in the index (a parquet file, or a CSV with :data:`COLUMNS`)."""
    path = Path(index_path) if index_path else default_index_path()
    rows = _read_rows(path, collection)
    if not rows:
        raise ConfigError(
            f"IDC collection {collection!r} is not in the index {path.name} "
            f"({index_version(path if index_path else None).package}); collection ids are lower case "
            "with underscores, e.g. 'hcc_tace_seg'"
        )
    series = [_series_of(r) for r in rows]
    return tuple(sorted(series, key=lambda s: (s.patient_id, s.study_instance_uid, s.series_instance_uid)))


def _read_rows(path: Path, collection: str) -> list[dict[str, Any]]:
    import pyarrow.compute as pc

    if path.suffix == ".csv":
        from pyarrow import csv

        table = csv.read_csv(
            path,
            convert_options=csv.ConvertOptions(
                include_columns=list(COLUMNS), strings_can_be_null=True, column_types=_csv_types()
            ),
        )
        table = table.filter(pc.equal(table["collection_id"], collection))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=list(COLUMNS), filters=[("collection_id", "=", collection)])
    return table.to_pylist()


def _csv_types() -> dict[str, Any]:
    import pyarrow as pa

    strings = {c: pa.string() for c in COLUMNS}
    return {**strings, "instanceCount": pa.int64(), "series_size_MB": pa.float64()}


def _series_of(row: dict[str, Any]) -> IdcSeries:
    url = str(row.get("series_aws_url") or "")
    bucket = url.partition("://")[2].split("/", 1)[0] if "://" in url else "idc-open-data"
    number = row.get("SeriesNumber")
    return IdcSeries(
        patient_id=str(row["PatientID"]),
        study_instance_uid=str(row["StudyInstanceUID"]),
        study_date=str(row.get("StudyDate") or ""),
        study_description=str(row.get("StudyDescription") or ""),
        series_instance_uid=str(row["SeriesInstanceUID"]),
        series_number=None if number in (None, "") else int(float(number)),
        series_description=str(row.get("SeriesDescription") or ""),
        modality=str(row["Modality"]),
        analysis_result_id=str(row.get("analysis_result_id") or ""),
        instance_count=int(row.get("instanceCount") or 0),
        size_bytes=round(float(row.get("series_size_MB") or 0.0) * 1e6),
        crdc_series_uuid=str(row["crdc_series_uuid"]),
        bucket=bucket,
    )


def resolve(url: str, index_path: str | Path | None = None) -> IdcSelection:
    """The series ``url`` selects from the index (no network)."""
    query = parse_url(url)
    path = None if index_path is None else str(index_path)
    every = collection_series(query.collection, path)
    _check_known(url, "patients", query.patients, {s.patient_id for s in every})
    _check_known(url, "modalities", query.modalities, {s.modality.upper() for s in every})
    results = {s.analysis_result_id for s in every if s.analysis_result_id}
    if query.analysis not in ((ANALYSIS_ALL,), (ANALYSIS_NONE,)):
        _check_known(url, "analysis", query.analysis, results)
    chosen = tuple(s for s in every if query.keeps(s))
    if not chosen:
        raise ConfigError(f"{url!r} selects no series of {query.collection!r} from the IDC index")
    return IdcSelection(
        url=url.strip(),
        query=query,
        series=chosen,
        version=index_version(None if path is None else Path(path)),
        analysis_results=tuple(
            sorted((s.series_instance_uid, s.analysis_result_id) for s in chosen if s.analysis_result_id)
        ),
    )


def _check_known(url: str, key: str, wanted: Iterable[str], known: set[str]) -> None:
    missing = [w for w in wanted if w not in known]
    if missing:
        shown = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
        raise ConfigError(f"{url!r}: {key} {missing} not in the collection; it has {shown}")


def storage_options_for(protocol: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """``given`` when it names credentials or anonymity; else anonymous access to IDC's buckets.

    An ``endpoint_url`` alone (a mirror, an emulator) keeps anonymous access as well.
    """
    given = dict(given or {})
    credential_keys = {"anon", "key", "secret", "token", "profile", "session"}
    if credential_keys & set(given):
        return given
    return {**ANONYMOUS_OPTIONS[protocol], **given}


def format_index_record(rec: dict[str, Any]) -> str:
    """One line for the terminal: what the index says the build will touch."""
    by = ", ".join(f"{k} {v}" for k, v in rec["segs_by_analysis_result"].items()) or "none"
    release = rec.get("idc_release")
    return (
        f"INDEX {rec['source']}: {rec['patients']} patients, {rec['studies']} studies, "
        f"{rec['series']} series ({rec['segs']} SEG: {by}), {rec['instances']:,} instances, "
        f"{rec['bytes'] / 1e9:.1f} GB (idc-index-data {rec['idc_index_data']}"
        + (f", IDC release v{release})" if release is not None else ")")
    )

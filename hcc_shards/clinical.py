"""The clinical table: read (CSV, XLSX, Parquet at any fsspec URL), type, and join to the cohort.

Order of operations (:func:`load_clinical`, then :func:`join_clinical` in the commit step):

1. **read** the file into raw cells (text for CSV; the stored values for XLSX and Parquet);
2. **key**: the join column is the one given, else the first of :data:`KEY_CANDIDATES` present
   (case-insensitive);
3. **type** each column: int64 or float64 when most of its non-missing cells are numbers and the
   others are at most one cell or ``1 - NUMERIC_SHARE`` of them, else string. A non-number in a numeric column becomes null and a ``unparsable_cell``
   problem; :data:`MISSING_TOKENS` are missing values, never problems;
4. **rows**: IDs are stripped; an empty ID is a ``empty_id`` problem, a repeated ID a ``duplicate_id``
   problem (the first row is kept);
5. **join** (:func:`join_clinical`) against the patient IDs of the built cases, after mapping the
   table's IDs through the build's pseudonymizer when it has a key (the manifest holds pseudonyms):
   ``row_without_case`` and ``case_without_row`` problems.

Nothing here raises on bad content: every finding is a :class:`ClinicalProblem`, reported in the
build summary and DATASET.md. Only an unreadable file raises :class:`~hcc_shards.errors.ConfigError`,
which the commit step turns into a problem too.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hcc_shards import storage
from hcc_shards.errors import ConfigError

__all__ = [
    "KEY_CANDIDATES",
    "PATIENT_COLUMN",
    "ClinicalJoin",
    "ClinicalProblem",
    "ClinicalTable",
    "NoKeyColumn",
    "join_clinical",
    "load_clinical",
    "parse_clinical",
    "safe_names",
]

KEY_CANDIDATES: tuple[str, ...] = ("PatientID", "ID", "TCIA_ID")
"""Join columns looked for, in this order, when none is given."""
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a"})
"""Cell texts (stripped, lower case) that mean a missing value."""
NUMERIC_SHARE = 0.8
"""A column is numeric when at least this share of its non-missing cells are numbers."""
PATIENT_COLUMN = "patient_id"
"""First column of clinical.parquet: the manifest's patient_id (a pseudonym when the build has a key)."""
PROBLEM_KINDS: tuple[str, ...] = (
    "unreadable",
    "no_key_column",
    "empty_id",
    "duplicate_id",
    "unparsable_cell",
    "row_without_case",
    "case_without_row",
)
"""Every kind of :class:`ClinicalProblem`, in report order."""

_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class ClinicalProblem:
    """One finding about the clinical table; never fatal, always reported."""

    kind: str
    """One of :data:`PROBLEM_KINDS`."""
    patient_id: str = ""
    """The row's ID as in the table (mapped to the pseudonym in join reports when keyed)."""
    row: int = -1
    """0-based data row of the file (-1: not about one row)."""
    column: str = ""
    """Column name, for ``unparsable_cell``."""
    value: str = ""
    """The cell text, for ``unparsable_cell``; the message for ``unreadable``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "patient_id": self.patient_id,
            "row": self.row,
            "column": self.column,
            "value": self.value,
        }


@dataclass(frozen=True)
class ClinicalTable:
    """A typed clinical table, one row per distinct patient ID, in file order."""

    table: pa.Table
    """Typed columns under their original names (the key column included)."""
    key: str
    """Name of the join column."""
    safe: tuple[tuple[str, str], ...]
    """(original name, safe name) of every column: lower case ``[a-z0-9_]``, starting with a letter, unique."""
    problems: tuple[ClinicalProblem, ...]
    """Findings of reading and typing (empty IDs, duplicates, unparsable cells)."""
    source: str
    """URL the table was read from."""
    sha256: str
    """sha256 of the file's bytes."""

    @property
    def ids(self) -> list[str]:
        return [str(v) for v in self.table.column(self.key).to_pylist()]


@dataclass(frozen=True)
class ClinicalJoin:
    """The clinical table joined to a build's patients."""

    table: pa.Table
    """clinical.parquet: :data:`PATIENT_COLUMN` first, then the original columns (the key column
    dropped when IDs were pseudonymised: it holds the raw identifiers)."""
    key: str
    """Join column of the source table."""
    safe: tuple[tuple[str, str], ...]
    """(original name, safe name) of the columns after :data:`PATIENT_COLUMN`."""
    problems: tuple[ClinicalProblem, ...]
    """Every finding: reading, typing and join."""
    patients: int
    """Patients of the build."""
    joined: int
    """Patients of the build with a row."""
    rows: int
    """Rows of the table kept (one per distinct ID)."""
    source: str
    sha256: str
    pseudonymized: bool
    """True when the table's IDs were mapped to the build's pseudonyms."""

    def counts(self) -> dict[str, int]:
        """Problems per kind (every kind, zeros included)."""
        return {k: sum(1 for p in self.problems if p.kind == k) for k in PROBLEM_KINDS}

    def values(self, column: str) -> dict[str, Any]:
        """patient_id -> value of ``column`` (original or safe name) for the patients with a row."""
        name = dict((s, o) for o, s in self.safe).get(column, column)
        if name not in self.table.column_names:
            raise KeyError(f"no clinical column {column!r}; columns are {self.table.column_names[1:]}")
        ids = self.table.column(PATIENT_COLUMN).to_pylist()
        return dict(zip(ids, self.table.column(name).to_pylist(), strict=True))


def load_clinical(
    url: str, storage_options: dict[str, Any] | None = None, key: str | None = None
) -> ClinicalTable:
    """Read and type the table at ``url``; ConfigError when it cannot be read at all."""
    fs, path = storage.filesystem(url, storage_options)
    try:
        data = fs.cat_file(path)
    except OSError as e:
        raise ConfigError(f"cannot read the clinical table {url!r}: {type(e).__name__}: {e}") from e
    return parse_clinical(data, url, key)


def parse_clinical(data: bytes, source: str, key: str | None = None) -> ClinicalTable:
    """:func:`load_clinical` on bytes already read; the format is taken from ``source``'s suffix."""
    names, rows = _cells(data, source)
    key_name = _key_column(names, key, source)
    problems: list[ClinicalProblem] = []
    kidx = names.index(key_name)
    kept: list[list[Any]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        pid = _text(row[kidx]).strip()
        if not pid or pid.lower() in MISSING_TOKENS:
            problems.append(ClinicalProblem("empty_id", row=i))
            continue
        if pid in seen:
            problems.append(ClinicalProblem("duplicate_id", patient_id=pid, row=i))
            continue
        seen.add(pid)
        row = list(row)
        row[kidx] = pid
        kept.append([i, *row])
    columns: dict[str, pa.Array] = {}
    for c, name in enumerate(names):
        cells = [r[c + 1] for r in kept]
        if name == key_name:
            columns[name] = pa.array(cells, type=pa.string())
            continue
        arr, bad = _typed(cells)
        columns[name] = arr
        problems += [
            ClinicalProblem(
                "unparsable_cell",
                patient_id=str(kept[j][kidx + 1]),
                row=int(kept[j][0]),
                column=name,
                value=_text(cells[j]),
            )
            for j in bad
        ]
    problems.sort(key=lambda p: (PROBLEM_KINDS.index(p.kind), p.row, p.column))
    return ClinicalTable(
        table=pa.table(columns),
        key=key_name,
        safe=tuple(zip(names, safe_names(names), strict=True)),
        problems=tuple(problems),
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def join_clinical(
    clinical: ClinicalTable, patient_ids: Sequence[str], pseudonym: Callable[[str], str] | None = None
) -> ClinicalJoin:
    """Join ``clinical`` to the build's patients; ``pseudonym`` maps a raw ID to the manifest's ID."""
    raw = clinical.ids
    mapped = [pseudonym(p) for p in raw] if pseudonym else raw
    wanted = sorted(set(patient_ids))
    have = set(mapped)
    problems = list(clinical.problems)
    known = set(wanted)
    problems += [
        ClinicalProblem("row_without_case", patient_id=m, row=i)
        for i, m in enumerate(mapped)
        if m not in known
    ]
    problems += [ClinicalProblem("case_without_row", patient_id=p) for p in wanted if p not in have]
    if pseudonym:  # rows and reports by pseudonym only; the raw ID column is dropped
        problems = [_pseudonymized(p, pseudonym) for p in problems]
    body = clinical.table.drop_columns([clinical.key]) if pseudonym else clinical.table
    table = pa.Table.from_arrays(
        [pa.array(mapped, type=pa.string()), *body.columns], names=[PATIENT_COLUMN, *body.column_names]
    )
    safe = tuple((o, s) for o, s in clinical.safe if o in body.column_names)
    return ClinicalJoin(
        table=table,
        key=clinical.key,
        safe=safe,
        problems=tuple(sorted(problems, key=lambda p: (PROBLEM_KINDS.index(p.kind), p.row, p.patient_id))),
        patients=len(wanted),
        joined=sum(1 for p in wanted if p in have),
        rows=table.num_rows,
        source=clinical.source,
        sha256=clinical.sha256,
        pseudonymized=pseudonym is not None,
    )


def unreadable_join(source: str, message: str, patient_ids: Sequence[str]) -> ClinicalJoin:
    """The join of a table that could not be read: no rows, and the reason as a problem."""
    problems = [ClinicalProblem("unreadable", value=message)]
    problems += [ClinicalProblem("case_without_row", patient_id=p) for p in sorted(set(patient_ids))]
    return ClinicalJoin(
        table=pa.table({PATIENT_COLUMN: pa.array([], type=pa.string())}),
        key="",
        safe=(),
        problems=tuple(problems),
        patients=len(set(patient_ids)),
        joined=0,
        rows=0,
        source=source,
        sha256="",
        pseudonymized=False,
    )


def safe_names(names: Sequence[str]) -> list[str]:
    """Lower-case ``[a-z0-9_]`` names starting with a letter (``c`` prefixed), unique (``_2``, ``_3``)."""
    out: list[str] = []
    used: set[str] = {PATIENT_COLUMN}
    for name in names:
        base = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "column"
        if not base[0].isalpha():
            base = f"c{base}"
        cand, n = base, 2
        while cand in used:
            cand, n = f"{base}_{n}", n + 1
        used.add(cand)
        out.append(cand)
    return out


def write_clinical(join: ClinicalJoin) -> bytes:
    """clinical.parquet bytes; the safe-name map and the source are in the schema metadata."""
    meta = {
        b"hcc_shards.key": join.key.encode(),
        b"hcc_shards.safe_names": _json_bytes(dict(join.safe)),
        b"hcc_shards.source_sha256": join.sha256.encode(),
    }
    table = join.table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


# -- helpers -----------------------------------------------------------------------------


def _json_bytes(obj: Any) -> bytes:
    import json

    return json.dumps(obj, sort_keys=True).encode()


def _cells(data: bytes, source: str) -> tuple[list[str], list[list[Any]]]:
    suffix = source.lower().rsplit("?", 1)[0]
    try:
        if suffix.endswith((".parquet", ".pq")):
            t = pq.read_table(io.BytesIO(data))
            names = [str(n) for n in t.column_names]
            cols = [t.column(n).to_pylist() for n in t.column_names]
            return names, [list(r) for r in zip(*cols, strict=True)] if cols else []
        if suffix.endswith((".xlsx", ".xlsm")):
            return _xlsx_cells(data)
        text = data.decode("utf-8-sig")
    except ConfigError:
        raise
    except Exception as e:  # every parser has its own errors; all mean "not a readable table"
        raise ConfigError(f"cannot read the clinical table {source!r}: {type(e).__name__}: {e}") from e
    dialect = csv.excel_tab if suffix.endswith((".tsv", ".tab")) else csv.excel
    lines = list(csv.reader(io.StringIO(text), dialect))
    lines = [ln for ln in lines if any(c.strip() for c in ln)]
    if not lines:
        raise ConfigError(f"the clinical table {source!r} is empty")
    names = [n.strip() for n in lines[0]]
    width = len(names)
    rows = [(ln + [""] * width)[:width] for ln in lines[1:]]
    return names, rows


def _xlsx_cells(data: bytes) -> tuple[list[str], list[list[Any]]]:
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    sheet = book.worksheets[0]
    lines = [list(r) for r in sheet.iter_rows(values_only=True)]
    lines = [r for r in lines if any(c is not None and str(c).strip() for c in r)]
    if not lines:
        raise ConfigError("the clinical table's first sheet is empty")
    names = [_text(n).strip() for n in lines[0]]
    width = len(names)
    return names, [(r + [None] * width)[:width] for r in lines[1:]]


def _key_column(names: list[str], key: str | None, source: str) -> str:
    if key:
        if key in names:
            return key
        raise NoKeyColumn(f"join column {key!r} is not in the clinical table {source!r}; columns are {names}")
    lower = {n.lower(): n for n in reversed(names)}
    for cand in KEY_CANDIDATES:
        if cand.lower() in lower:
            return lower[cand.lower()]
    raise NoKeyColumn(
        f"no join column in the clinical table {source!r}: expected one of {list(KEY_CANDIDATES)} "
        f"(or name one with --clinical_key); columns are {names}"
    )


class NoKeyColumn(ConfigError):
    """No join column: the table is read but cannot be joined."""


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip().lower() in MISSING_TOKENS


def _number(v: Any) -> int | float | None:
    """The number a cell holds (int when integral text or an int), else None."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (dt.date, dt.datetime)):
        return None
    s = str(v).strip().replace(",", "") if isinstance(v, str) and _thousands(v) else str(v).strip()
    if _INT.fullmatch(s):
        return int(s)
    try:
        f = float(s)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _thousands(s: str) -> bool:
    return re.fullmatch(r"\s*[+-]?\d{1,3}(,\d{3})+(\.\d*)?\s*", s) is not None


def _typed(cells: list[Any]) -> tuple[pa.Array, list[int]]:
    """(typed column, indices of unparsable cells) per the rule of the module docstring."""
    present = [i for i, v in enumerate(cells) if not _missing(v)]
    numbers = {i: _number(cells[i]) for i in present}
    numeric = [i for i in present if numbers[i] is not None]
    others = len(present) - len(numeric)
    if len(numeric) > others and others <= max(1.0, (1.0 - NUMERIC_SHARE) * len(present)):
        bad = [i for i in present if numbers[i] is None]
        vals = [numbers.get(i) if i not in bad else None for i in range(len(cells))]
        if all(isinstance(numbers[i], int) for i in numeric) and all(
            -(2**63) <= numbers[i] < 2**63
            for i in numeric  # type: ignore[operator]
        ):
            return pa.array(vals, type=pa.int64()), bad
        return pa.array([None if v is None else float(v) for v in vals], type=pa.float64()), bad
    return pa.array([None if _missing(v) else _text(v).strip() for v in cells], type=pa.string()), []


def _pseudonymized(p: ClinicalProblem, pseudonym: Callable[[str], str]) -> ClinicalProblem:
    if p.kind in ("row_without_case", "case_without_row") or not p.patient_id:
        return p  # already the manifest's ID
    from dataclasses import replace

    return replace(p, patient_id=pseudonym(p.patient_id))

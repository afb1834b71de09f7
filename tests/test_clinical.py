"""The clinical table: reading (CSV, XLSX, Parquet), typing, key detection and the join report."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hcc_shards.clinical import join_clinical, load_clinical, parse_clinical, safe_names
from hcc_shards.errors import ConfigError
from hcc_shards.pseudonymize import Pseudonymizer

REAL = Path("/work/shared/data/clinical/HCC-TACE-Seg_clinical.csv")
if not REAL.exists():  # the copy kept next to the checkout
    REAL = (
        Path(__file__).resolve().parents[1]
        / ".."
        / "shared"
        / "data"
        / "clinical"
        / "HCC-TACE-Seg_clinical.csv"
    )
COHORT = [f"HCC_{i:03d}" for i in range(1, 106)]

needs_real = pytest.mark.skipif(not REAL.exists(), reason="the real clinical table is not in this checkout")


@needs_real
def test_real_table_joins_all_105_patients_with_typed_columns() -> None:
    table = load_clinical(str(REAL))
    assert table.key == "ID" and table.table.num_columns == 57 and table.table.num_rows == 105
    join = join_clinical(table, COHORT)
    assert (join.joined, join.patients) == (105, 105)
    assert all(n == 0 for n in join.counts().values()), join.counts()
    schema = table.table.schema
    assert schema.field("TTP").type == pa.float64() and schema.field("age").type == pa.int64()
    assert schema.field("Censored_0_progressed_1").type == pa.int64()
    assert schema.field("hepatitis").type == pa.string()
    assert table.table.column("chemotherapy").null_count > 0  # "NA" is missing, not text
    assert join.table.column_names[0] == "patient_id" and "Portal Vein Thrombosis" in join.table.column_names
    assert dict(join.safe)["Portal Vein Thrombosis"] == "portal_vein_thrombosis"
    assert dict(join.safe)["1_EASL_BL"] == "c1_easl_bl"


@needs_real
def test_broken_copies_are_reported_not_dropped_silently() -> None:
    lines = REAL.read_text().splitlines()
    header, body = lines[0], lines[1:]
    broken = [body[0], body[0].replace("HCC_001", "HCC_001", 1)]  # a duplicate ID
    broken += [body[1].replace(",20.71428571,", ",twenty,", 1)]  # an unparsable TTP
    broken += [",".join(["HCC_999", *body[2].split(",")[1:]])]  # a row without a case
    broken += [",".join(["", *body[3].split(",")[1:]])]  # a row without an ID
    broken += body[5:]  # HCC_005 missing: a case without a row
    data = "\n".join([header, *broken]).encode()
    join = join_clinical(parse_clinical(data, "broken.csv"), COHORT)
    counts = join.counts()
    assert counts["duplicate_id"] == 1 and counts["unparsable_cell"] == 1 and counts["empty_id"] == 1
    assert counts["row_without_case"] == 1 and counts["case_without_row"] == 3  # 003, 004, 005
    bad = next(p for p in join.problems if p.kind == "unparsable_cell")
    assert (bad.patient_id, bad.column, bad.value) == ("HCC_002", "TTP", "twenty")
    assert join.values("TTP")["HCC_002"] is None and join.table.schema.field("TTP").type == pa.float64()
    assert {p.patient_id for p in join.problems if p.kind == "case_without_row"} == {
        "HCC_003",
        "HCC_004",
        "HCC_005",
    }
    assert join.joined == 102


def _table_bytes() -> bytes:
    return b"TCIA_ID,TTP,event,site\nA,10,1,x\nB,12.5,0,y\nC,,1,x\n"


def test_xlsx_and_parquet_read_like_csv(tmp_path: Path) -> None:
    import openpyxl

    csv_t = parse_clinical(_table_bytes(), "t.csv")
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [
        ["TCIA_ID", "TTP", "event", "site"],
        ["A", 10, 1, "x"],
        ["B", 12.5, 0, "y"],
        ["C", None, 1, "x"],
    ]:
        sheet.append(row)
    book.save(tmp_path / "t.xlsx")
    pq.write_table(csv_t.table, tmp_path / "t.parquet")
    for name in ("t.xlsx", "t.parquet"):
        other = load_clinical(str(tmp_path / name))
        assert other.key == "TCIA_ID" and other.table.equals(csv_t.table), name
    assert csv_t.table.schema.field("TTP").type == pa.float64()


def test_key_given_or_missing_and_unreadable_files() -> None:
    assert parse_clinical(b"pid,x\nA,1\n", "t.csv", key="pid").key == "pid"
    with pytest.raises(ConfigError, match="no join column"):
        parse_clinical(b"pid,x\nA,1\n", "t.csv")
    with pytest.raises(ConfigError, match="'nope' is not in"):
        parse_clinical(b"ID,x\nA,1\n", "t.csv", key="nope")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_clinical(b"not parquet", "t.parquet")
    with pytest.raises(ConfigError, match="cannot read"):
        load_clinical("/nonexistent/clinical.csv")


def test_pseudonymised_join_drops_the_raw_ids() -> None:
    pseudo = Pseudonymizer("k")
    cohort = [pseudo.patient_id(p) for p in ("A", "B")]
    join = join_clinical(parse_clinical(_table_bytes(), "t.csv"), cohort, pseudo.patient_id)
    assert join.joined == 2 and "TCIA_ID" not in join.table.column_names
    assert join.table.column("patient_id").to_pylist() == [pseudo.patient_id(p) for p in "ABC"]
    assert [p.patient_id for p in join.problems] == [pseudo.patient_id("C")]  # a row without a case
    buf = io.BytesIO()
    pq.write_table(join.table, buf)
    assert b"TCIA_ID" not in buf.getvalue() and b",A," not in buf.getvalue()


def test_safe_names_are_unique_identifiers() -> None:
    assert safe_names(["A b", "a-b", "1x", "", "patient_id"]) == [
        "a_b",
        "a_b_2",
        "c1x",
        "column",
        "patient_id_2",
    ]

"""Header text escapes (hcc_shards.text)."""

from hcc_shards.text import md_cell, printable


def test_printable_escapes_control_bytes_and_surrogates():
    raw = "a\nb\rc\x1b[31m\x00" + b"\xff".decode("utf-8", "surrogateescape")
    out = printable(raw)
    assert out == "a\\nb\\rc\\x1b[31m\\x00\\udcff"
    out.encode("utf-8")  # always encodable


def test_printable_caps_length():
    assert printable("x" * 1000, limit=10) == "x" * 10 + "…"


def test_md_cell_is_one_inert_line():
    cell = md_cell("<script>alert(1)</script>|x|`code`[a](b)\n")
    assert "\n" not in cell and "<" not in cell and ">" not in cell
    assert "|" not in cell.replace("\\|", "")
    assert "`" not in cell.replace("\\`", "")
    assert cell.startswith("&lt;script&gt;")
    assert md_cell("HCC_001") == "HCC_001"

"""The file and folder names of docs/FORMAT.md are spelled in hcc_shards/format.py and nowhere else.

Every string constant of every module under ``hcc_shards/`` and ``pipelines/`` (f-string parts
included, docstrings and other bare string statements left out) is searched for the names that
:mod:`hcc_shards.format` defines: a file name (``dataset.json``, ``qc/cohort.png``'s ``cohort.png``)
anywhere in the text; a folder name (``versions``, ``labels``) where it is a path component: at the
start of the text followed by ``/`` or after a ``/`` (``"qc/..."``, ``f"{p}/labels/{c}"``), or as a
whole constant handed to a path call (``storage.join(url, "versions", h)``,
``group.create_group("foreground")``, ``path / "qc"``). The same words as JSON keys, stage names
or prose (``"labels"`` of ``dataset.json``, "cases/min") are not paths and are not counted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hcc_shards import format as fmt

ROOT = Path(__file__).resolve().parents[1]

NOT_YET_CHECKED: frozenset[str] = frozenset()
"""Modules not scanned yet (none: every module uses the names of hcc_shards.format)."""

ALLOWED = frozenset(
    {
        # The NIfTI export's own layout, DEST/images/ and DEST/labels/: not the dataset format.
        ("hcc_shards/export/nifti.py", "images"),
        ("hcc_shards/export/nifti.py", "labels"),
        ("hcc_shards/commands/export.py", "images"),
        ("hcc_shards/commands/export.py", "labels"),
        # nnU-Net's dataset.json of an nnU-Net raw export: another format's file of the same name.
        ("hcc_shards/export/nnunet.py", "dataset.json"),
        ("hcc_shards/commands/export.py", "dataset.json"),
        # A pyradiomics setting recorded in dataset.json (the labels features are computed for).
        ("hcc_shards/features.py", "labels"),
    }
)
"""(module, name) pairs where a format name means something else."""

_SUFFIXES = ("_FILE", "_DIR", "_PNG", "_GROUP", "ZARR_JSON")
_PATH_CALLS = frozenset({"join", "create_group", "create_array", "open_group", "with_root", "read", "exists"})
"""Calls whose string arguments are path components."""


def format_names() -> tuple[frozenset[str], frozenset[str]]:
    """(file names, folder names) of hcc_shards.format: the last path component of every public
    constant named ``*_FILE``, ``*_DIR``, ``*_PNG``, ``*_GROUP`` or ``ZARR_JSON``."""
    files, folders = set(), set()
    for name in fmt.__all__:
        value = getattr(fmt, name)
        if name.isupper() and isinstance(value, str) and name.endswith(_SUFFIXES):
            last = value.rsplit("/", 1)[-1]
            (files if "." in last else folders).add(last)
    return frozenset(files), frozenset(folders)


def _patterns(files: frozenset[str], folders: frozenset[str]) -> dict[str, re.Pattern[str]]:
    out = {n: re.compile(rf"(?<![\w.-]){re.escape(n)}(?![\w-])") for n in files}
    for n in folders:
        # A path component: "versions/...", ".../labels/...", ".../foreground" (not "versions 1 and 2").
        out[n] = re.compile(rf"^{re.escape(n)}/|/{re.escape(n)}(?:/|$)")
    return out


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are bare statements (docstrings of modules, classes,
    functions and attributes)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _path_parts(tree: ast.AST) -> set[int]:
    """ids of the string constants handed to a path call or joined to a path with ``/``."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _PATH_CALLS:
                out.update(id(a) for a in node.args if isinstance(a, ast.Constant))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            out.update(id(a) for a in (node.left, node.right) if isinstance(a, ast.Constant))
    return out


def literal_hits(source: str, files: frozenset[str], folders: frozenset[str]) -> list[tuple[int, str, str]]:
    """(line, name, constant) for every format name spelled in a string constant of ``source``."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    paths = _path_parts(tree)
    patterns = _patterns(files, folders)
    hits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        text = node.value
        for name, pattern in patterns.items():
            whole = name in folders and text == name and id(node) in paths
            if whole or pattern.search(text):
                hits.append((node.lineno, name, text))
    return sorted(hits)


def _modules() -> list[Path]:
    return sorted([*(ROOT / "hcc_shards").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")])


def test_the_names_are_those_of_the_format():
    files, folders = format_names()
    assert {
        "LATEST.json",
        "dataset.json",
        "manifest.parquet",
        "quarantine.parquet",
        "clinical.parquet",
        "features.parquet",
        "DATASET.md",
        "zarr.json",
        "cohort.png",
        "agreement.png",
        "survival.png",
        "_COMPLETE.json",
    } <= files
    assert {"versions", "complete", "images", "labels", "foreground", "qc", "features", "cases"} <= folders


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('x = storage.join(url, "versions", h)', ["versions"]),
        ('x = f"{root}/labels/{case_id}"', ["labels"]),
        ('raise E(f"{where}: dataset.json is missing")', ["dataset.json"]),
        ('x = "qc/cohort.png"', ["cohort.png", "qc"]),
        ('g.create_group("foreground")', ["foreground"]),
        ('p = root / "qc"', ["qc"]),
        ('x = f"{p}/foreground"', ["foreground"]),
        ('"""Reads dataset.json and versions/<hash>."""', []),
        ('def f():\n    """Writes complete/<image_id>.json."""', []),
        ('d = {"labels": 1}; d.get("features"); d["cases"]; x == "labels"', []),
        ('stage = "features"; getattr(args, "features", False); STAGES = ("pair", "cases")', []),
        ('m = "this reader reads versions 1 and 2"; r = f"{n} cases/min"', []),
        ('n = "splits_final.json"; p = "features_bench"', []),
    ],
)
def test_the_scan_finds_names_and_only_names(source, found):
    files, folders = format_names()
    assert [name for _, name, _ in literal_hits(source, files, folders)] == found


def test_no_format_name_is_spelled_outside_format_py():
    files, folders = format_names()
    found = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel == "hcc_shards/format.py" or rel in NOT_YET_CHECKED:
            continue
        for line, name, text in literal_hits(path.read_text(), files, folders):
            if (rel, name) not in ALLOWED:
                found.append(f"{rel}:{line}: {name!r} in {text!r}")
    assert not found, "use the names of hcc_shards.format:\n" + "\n".join(found)


def test_not_yet_checked_names_only_existing_modules():
    missing = sorted(rel for rel in NOT_YET_CHECKED if not (ROOT / rel).is_file())
    assert not missing, f"remove from NOT_YET_CHECKED (moved or deleted): {missing}"

"""The layers hold: no module of the package loads an engine, and no two modules import each other."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINES = ("apache_beam", "pyspark")

_PROBE = """
import importlib, json, pkgutil, sys
import hcc_shards
engines = {engines!r}
loaded, skipped = {{}}, {{}}
names = sorted(m.name for m in pkgutil.walk_packages(hcc_shards.__path__, "hcc_shards."))
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:  # an optional extra of the reader (torch, monai) not installed here
        skipped[name] = str(exc)
        continue
    found = sorted(m for m in sys.modules if m.split(".")[0] in engines)
    if found:
        loaded[name] = found
        break
print(json.dumps({{"modules": names, "loaded": loaded, "skipped": skipped}}))
"""


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of hcc_shards and pipelines."""
    out = {}
    for package in ("hcc_shards", "pipelines"):
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its body (lazy imports in functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(o for a in node.names if (o := owner(a.name)))
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = node.module or ""
            if node.level:
                up = package
                for _ in range(node.level - 1):
                    up = up.rpartition(".")[0]
                base = f"{up}.{base}".rstrip(".")
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else owner(base) or "")
    found.discard("")
    found.discard(name)
    return found


def test_no_module_of_the_package_loads_an_engine() -> None:
    code = _PROBE.format(engines=ENGINES)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True, cwd=REPO
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) > 100, "the probe did not find the package's modules"
    assert "hcc_shards.build.cases" in report["modules"]
    assert report["loaded"] == {}, f"importing {report['loaded']} loads an engine"
    # Only the reader's framework adapters may be skipped, for extras this environment lacks.
    assert all(".read." in name for name in report["skipped"]), report["skipped"]


def test_no_two_modules_import_each_other() -> None:
    modules = project_modules()
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert "hcc_shards.build.plan" in graph["hcc_shards.build.cases"]
    mutual = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph[b]})
    assert mutual == []
    # Nor do longer rings: a depth-first walk finds no module on its own import path.
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*path, name, dep])}"
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])

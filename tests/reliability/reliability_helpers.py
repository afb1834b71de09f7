"""Helpers of the reliability suite: builds (in process and as a child process), core runs, output comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from hcc_shards.build.listing import list_input
from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.dicom import InstanceHeader, decode_or_record, index_file, pair_patient
from hcc_shards.quarantine import QuarantineRecord
from hcc_shards.synth import CohortTruth
from hcc_shards.synth.faults import InjectedFault

REPO = Path(__file__).resolve().parents[2]
SPACING = "6,4,4"
"""Fixed target spacing (z, y, x mm) of every build here: 'auto' would change with the case mix."""
IN_PROCESS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
VOLATILE_FILES = ("dataset.json", "DATASET.md")
"""Files whose build time and run statistics differ between two builds of the same input."""


PATIENTS = 24
"""Patients 1..24 of seed 0 hold 21 that can carry a fault (hcc_shards.synth.faults.ELIGIBLE_QUIRKS)."""
SEED = 0
SMALL = ("HCC_001", "HCC_003", "HCC_004")
"""The small cohort: two plain patients and one with stacked phases."""


@dataclass(frozen=True)
class Cohorts:
    clean: str
    """Healthy cohort (TCIA layout)."""
    faulted: str
    """A copy with one fault per assigned patient."""
    truth: CohortTruth
    """Generator truth of the clean cohort."""
    faults: tuple[InjectedFault, ...]
    """What was damaged, and the record a correct build makes of each."""


def build(input_url: str, output_url: str, *flags: str) -> Any:
    """Run a build in this process and return its Summary."""
    from pipelines.build import run_build

    argv = [f"--input={input_url}", f"--output={output_url}", f"--spacing={SPACING}", *IN_PROCESS, *flags]
    return run_build(argv, progress=False)


def build_command(input_url: str, output_url: str, *flags: str) -> list[str]:
    """argv of a build in a child process (``python -m pipelines.build``)."""
    return [
        sys.executable,
        "-m",
        "pipelines.build",
        f"--input={input_url}",
        f"--output={output_url}",
        f"--spacing={SPACING}",
        *IN_PROCESS,
        *flags,
    ]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run_build_process(
    input_url: str, output_url: str, *flags: str, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        build_command(input_url, output_url, *flags),
        env=child_env(**env),
        capture_output=True,
        timeout=600,
        check=False,
    )


@dataclass(frozen=True)
class CoreRun:
    """What index_file -> pair_patient -> decode_pairing make of one input tree."""

    cases: dict[str, Case]
    records: list[QuarantineRecord]


def core_run(root: str, config: BuildConfig | None = None) -> CoreRun:
    config = config or BuildConfig()
    indexed = [index_file(r.url, None, config, size=r.size) for r in list_input(root)]
    records = [r for r in indexed if isinstance(r, QuarantineRecord)]
    by_patient: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in indexed:
        if isinstance(h, InstanceHeader):
            by_patient[h.patient_id].append(h)
    cases: dict[str, Case] = {}
    for patient in sorted(by_patient):
        pairings, recs = pair_patient(by_patient[patient], config)
        records.extend(recs)
        for pairing in pairings:
            out = decode_or_record(pairing, config)
            if isinstance(out, QuarantineRecord):
                records.append(out)
            else:
                cases[out.case_id] = out
    return CoreRun(cases, records)


def version_dir(output: str | Path) -> Path:
    versions = sorted((Path(output) / "versions").iterdir())
    if len(versions) != 1:
        raise AssertionError(f"expected one version under {output}, found {[v.name for v in versions]}")
    return versions[0]


def files_of(root: str | Path) -> dict[str, bytes]:
    """relative path -> bytes of every file under ``root``, leaving out temporary siblings of
    interrupted atomic writes (hidden ``.<name>.<uuid>.tmp`` files, which no reader opens)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def stable_dataset_json(raw: bytes) -> dict[str, Any]:
    doc = json.loads(raw)
    doc.pop("created", None)
    doc.pop("summary", None)
    doc.pop("source", None)  # names the INPUT URL, which differs between the runs compared
    return doc


def assert_same_output(a: str | Path, b: str | Path) -> int:
    """Two build outputs hold the same files with the same bytes, except the build time and run
    statistics in dataset.json and DATASET.md, and the INPUT URL they record as the source.
    Returns the number of files compared."""
    fa, fb = files_of(a), files_of(b)
    assert sorted(fa) == sorted(fb), (
        f"file sets differ: only in first {sorted(set(fa) - set(fb))[:5]}, "
        f"only in second {sorted(set(fb) - set(fa))[:5]}"
    )
    differ = []
    for rel in sorted(fa):
        name = os.path.basename(rel)
        if name == "dataset.json":
            if stable_dataset_json(fa[rel]) != stable_dataset_json(fb[rel]):
                differ.append(rel)
        elif name == "DATASET.md":
            skip = ("Built ", "- Source: ", "- Input: ")
            strip = [ln for ln in fa[rel].decode().splitlines() if not ln.startswith(skip)]
            strip_b = [ln for ln in fb[rel].decode().splitlines() if not ln.startswith(skip)]
            if strip != strip_b:
                differ.append(rel)
        elif fa[rel] != fb[rel]:
            differ.append(rel)
    assert not differ, f"{len(differ)} files differ: {differ[:10]}"
    return len(fa)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    return pq.read_table(str(path)).to_pylist()


def shard_objects(version: Path) -> list[Path]:
    """Every stored chunk or shard object of every case (image, label, foreground arrays)."""
    return sorted(p for p in (version / "images").rglob("*") if p.is_file() and "/c/" in p.as_posix())


def case_of_object(version: Path, obj: Path) -> str:
    """The case a stored object belongs to: its label image's, or (an image shard) the image's one
    annotation (the synthetic cohort has one SEG per image)."""
    parts = obj.relative_to(version).parts
    if parts[2] == "labels":
        return parts[3]
    listed = json.loads((version / parts[0] / parts[1] / "labels" / "zarr.json").read_text())
    (case_id,) = listed["attributes"]["ome"]["labels"]
    return case_id


def expected_record_key(fault: Any) -> tuple[str, str, str]:
    return (fault.code, fault.stage, fault.path)


def record_key(record: QuarantineRecord | dict[str, Any], root: str) -> tuple[str, str, str]:
    r = record if isinstance(record, dict) else record.to_dict()
    prefix = root.rstrip("/") + "/"
    url = r["url"][len(prefix) :] if r["url"].startswith(prefix) else r["url"]
    return (r["code"], r["stage"], url)


__all__: Sequence[str] = [
    "IN_PROCESS",
    "PATIENTS",
    "SEED",
    "SMALL",
    "SPACING",
    "Cohorts",
    "CoreRun",
    "assert_same_output",
    "build",
    "build_command",
    "child_env",
    "core_run",
    "files_of",
    "read_rows",
    "record_key",
    "run_build_process",
    "shard_objects",
    "version_dir",
]

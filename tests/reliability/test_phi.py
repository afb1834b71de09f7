"""PHI: identifying strings planted in every input file (names, birth date, address, telephone,
free-text comments) appear in no output byte and no log line; ``--pseudonymize`` replaces patient
and study identifiers with a keyed hash, and then no PatientID, study UID or input path remains."""

from __future__ import annotations

import io
import json
import shutil
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from reliability_helpers import build, read_rows, run_build_process, version_dir

from hcc_shards.pseudonymize import URL_PREFIX, Pseudonymizer
from hcc_shards.synth import CohortTruth
from hcc_shards.synth.faults import PHI_STRINGS, Fault, inject_faults, plant_phi

KEY = "correct horse battery staple 1729"
PLANTED = (
    *PHI_STRINGS.values(),
    "QUILLFEATHER",
    "MARGUERITE",
    "BRANDYWINE",
    "SNODGRASS",
    "ELWOOD",
    "Wisteria",
    "Fairview",
    "40213",
    "555-0147",
    "Fiacre",
    "Rosalind",
    "dizziness",
    "88-4471-2",
    "hep C since",
    "19360229",
    "1936-02-29",
    "02-29-1936",
    "29/02/1936",
)


def _texts(path: Path) -> list[bytes]:
    """Every representation of a file a person could read: raw bytes, decoded tables, PNG text."""
    raw = path.read_bytes()
    out = [raw]
    if path.suffix == ".parquet":
        out.append(json.dumps(pq.read_table(io.BytesIO(raw)).to_pylist(), default=str).encode())
        out.append(str(pq.read_metadata(io.BytesIO(raw)).metadata).encode())
    if path.suffix == ".png":
        pos = 8
        while pos < len(raw):
            length = int.from_bytes(raw[pos : pos + 4], "big")
            kind, body = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + length]
            if kind == b"zTXt":
                out.append(zlib.decompress(body.split(b"\0", 1)[1][1:]))
            elif kind in (b"tEXt", b"iTXt"):
                out.append(body)
            pos += 12 + length
    return out


def _leaks(output: Path, logs: bytes, needles: tuple[str, ...]) -> list[str]:
    found = []
    lowered = [n.lower().encode() for n in needles]
    sources = [
        (str(p.relative_to(output)), t) for p in sorted(output.rglob("*")) if p.is_file() for t in _texts(p)
    ]
    sources.append(("build log", logs))
    for where, text in sources:
        low = text.lower()
        found.extend(f"{n.decode()!r} in {where}" for n in lowered if n in low)
    return found


@pytest.fixture(scope="module")
def phi_cohort(small_cohort: str, small_truth: CohortTruth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small cohort with PHI in every file, and three faults so that the quarantine table has rows."""
    root = tmp_path_factory.mktemp("phi") / "dicom"
    shutil.copytree(small_cohort, root)
    assert plant_phi(str(root)) > 300
    faults = {"HCC_001": Fault.ABSURD_RESCALE, "HCC_003": Fault.TWO_SEGS, "HCC_004": Fault.MEMORY_BOMB}
    inject_faults(str(root), small_truth, faults)  # records of the decode, pair and index stages
    return root


def test_planted_phi_reaches_no_output_and_no_log(phi_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_build_process(str(phi_cohort), str(out))
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs.decode()[-3000:]
    version = version_dir(out)
    assert len(read_rows(version / "manifest.parquet")) == 2
    assert {r["code"] for r in read_rows(version / "quarantine.parquet")} == {
        "invalid_rescale",
        "duplicate_seg",
        "image_too_large",
    }
    assert _leaks(out, logs, PLANTED) == []
    # The needles are findable: the same search over the input finds them.
    any_input = sorted(phi_cohort.rglob("*.dcm"))[0]
    assert _leaks(any_input.parent, b"", ("QUILLFEATHER", "Wisteria", "19360229"))


def test_pseudonymized_build_keeps_no_patient_or_study_identifier(
    phi_cohort: Path, small_truth: CohortTruth, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = run_build_process(str(phi_cohort), str(out), "--pseudonymize", HCC_SHARDS_PSEUDONYMIZE_KEY=KEY)
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs.decode()[-3000:]
    version = version_dir(out)
    rows = read_rows(version / "manifest.parquet")
    pseudo = Pseudonymizer(KEY)
    expected = {pseudo.patient_id(p) for p in ("HCC_003", "HCC_004")}
    assert {r["patient_id"] for r in rows} == expected
    assert all(r["case_id"].startswith("anon-") for r in rows)
    study_uids = {u for p in small_truth.patients for u in p.study_instance_uids}
    assert {pseudo.uid(u) for u in study_uids} >= {r["study_instance_uid"] for r in rows}
    records = read_rows(version / "quarantine.parquet")
    assert len(records) == 3 and all(r["url"].startswith(URL_PREFIX) for r in records)
    assert all(r["patient_id"].startswith("anon-") for r in records)
    identifiers = (
        *PLANTED,
        "HCC_0",
        KEY,
        *study_uids,
        *(p.seg_sop_instance_uid for p in small_truth.patients),
        *(s.series_instance_uid for p in small_truth.patients for s in p.series),
        str(phi_cohort),
    )
    assert _leaks(out, logs, identifiers) == []
    assert json.loads((version / "dataset.json").read_text())["config"]["pseudonymized"] is True


def test_pseudonyms_are_keyed_and_stable() -> None:
    a, b = Pseudonymizer("k1"), Pseudonymizer("k2")
    assert a.patient_id("HCC_001") == Pseudonymizer("k1").patient_id("HCC_001") != b.patient_id("HCC_001")
    assert a.patient_id("HCC_001") != a.patient_id("HCC_002")
    uid = a.uid("1.2.840.113619.2.55.3")
    assert uid.startswith("2.25.") and len(uid) <= 64 and uid != b.uid("1.2.840.113619.2.55.3")
    assert "k1" not in repr(a)
    with pytest.raises(ValueError):
        Pseudonymizer("")


def test_pseudonymize_flag_without_key_is_refused(
    phi_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hcc_shards.errors import ConfigError

    monkeypatch.delenv("HCC_SHARDS_PSEUDONYMIZE_KEY", raising=False)
    with pytest.raises(ConfigError, match="HCC_SHARDS_PSEUDONYMIZE_KEY"):
        build(str(phi_cohort), str(tmp_path / "out"), "--pseudonymize")
    assert not (tmp_path / "out").exists()

"""Bad inputs: every fault mode of the generator ends as its documented reason code, and the healthy
cases of the same run are identical to a clean run's (core functions, then the Beam build)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import (
    PATIENTS,
    SEED,
    Cohorts,
    build,
    core_run,
    files_of,
    read_rows,
    record_key,
    version_dir,
)

from hcc_shards.quarantine import Reason
from hcc_shards.synth.faults import CLASSIC_FAULTS, FAULTS, Fault

FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


def test_catalogue_covers_at_least_15_kinds_each_with_a_documented_code() -> None:
    documented = set(re.findall(r"^\| ([a-z_]+) \|", FORMAT_MD.read_text(), flags=re.M))
    assert len(FAULTS) == len(Fault) >= 15
    for fault, spec in FAULTS.items():
        assert spec.reason in Reason, fault
        assert spec.reason.value in documented, f"{fault}: {spec.reason} is not in the FORMAT.md table"
        assert spec.stage in ("index", "series", "pair", "decode", "resample"), fault
    # 31 kinds of bad input end in 26 distinct reason codes (20 of the first catalogue in 19).
    assert len({spec.reason for spec in FAULTS.values()}) == 26
    assert len({FAULTS[f].reason for f in CLASSIC_FAULTS}) == 19


def _expected(cohorts: Cohorts) -> Counter:
    return Counter((f.code, f.stage, f.path) for f in cohorts.faults)


def test_faults_core_functions(cohorts: Cohorts) -> None:
    clean = core_run(cohorts.clean)
    faulted = core_run(cohorts.faulted)
    assert clean.records == [], [r.code for r in clean.records]
    got = Counter(record_key(r, cohorts.faulted) for r in faulted.records)
    assert got == _expected(cohorts)
    for f in cohorts.faults:
        (rec,) = [r for r in faulted.records if record_key(r, cohorts.faulted) == (f.code, f.stage, f.path)]
        assert rec.patient_id in (f.patient_id, ""), f.fault
        if f.sop_instance_uid:
            assert rec.sop_instance_uid == f.sop_instance_uid, f.fault
        assert rec.message, f.fault
    lost = {f.patient_id for f in cohorts.faults if not f.keeps_case}
    expected_ids = {cid for cid, c in clean.cases.items() if c.provenance.patient_id not in lost}
    assert set(faulted.cases) == expected_ids
    assert len(expected_ids) >= 8
    for cid in expected_ids:
        a, b = clean.cases[cid], faulted.cases[cid]
        np.testing.assert_array_equal(a.image, b.image, err_msg=cid)
        np.testing.assert_array_equal(a.label, b.label, err_msg=cid)
        assert a.geometry == b.geometry, cid
        assert a.provenance == b.provenance, cid
        assert (a.warnings, a.unknown_segments, a.qc_flags) == (b.warnings, b.unknown_segments, b.qc_flags), (
            cid
        )


@pytest.fixture(scope="module")
def fault_builds(cohorts: Cohorts, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("fault-builds")
    clean_out, faulted_out = base / "clean", base / "faulted"
    build(cohorts.clean, str(clean_out))
    summary = build(cohorts.faulted, str(faulted_out))
    return clean_out, faulted_out, summary


@pytest.mark.slow
def test_faults_plan_and_build_agree(cohorts: Cohorts, fault_builds) -> None:
    from plan_vs_build import assert_plan_matches_build

    from hcc_shards.build.dryrun import plan_records

    _, faulted_out, _ = fault_builds
    records = list(plan_records(cohorts.faulted, workers=2))
    assert assert_plan_matches_build(records, version_dir(faulted_out), cohorts.faulted) >= 8


@pytest.mark.slow
def test_faults_beam_build(cohorts: Cohorts, fault_builds) -> None:
    clean_out, faulted_out, summary = fault_builds
    cv, fv = version_dir(clean_out), version_dir(faulted_out)
    assert cv.name == fv.name  # same configuration, same version
    assert read_rows(cv / "quarantine.parquet") == []
    quarantine = read_rows(fv / "quarantine.parquet")
    assert Counter(record_key(r, cohorts.faulted) for r in quarantine) == _expected(cohorts)
    assert dict(summary.quarantined_by_reason) == dict(Counter(f.code for f in cohorts.faults))

    lost = {f.patient_id for f in cohorts.faults if not f.keeps_case}
    clean_rows = {r["case_id"]: r for r in read_rows(cv / "manifest.parquet")}
    faulted_rows = {r["case_id"]: r for r in read_rows(fv / "manifest.parquet")}
    assert set(faulted_rows) == {cid for cid, r in clean_rows.items() if r["patient_id"] not in lost}
    # Splits are dealt over the whole cohort at commit (hcc_shards.shards.splits), so a patient that
    # is lost may move others between splits; every other column of a healthy case is unchanged.
    moved = ("split", "fold")
    for cid, row in faulted_rows.items():
        assert {k: v for k, v in row.items() if k not in moved} == {
            k: v for k, v in clean_rows[cid].items() if k not in moved
        }, cid
    # Every stored byte of every healthy case (arrays, attributes, marker, QC image) is the same.
    clean_files, faulted_files = files_of(cv), files_of(fv)
    for cid, row in faulted_rows.items():
        image = row["image_id"]
        for prefix in (f"images/{image}/", f"complete/{image}.json", f"qc/{cid}.png"):
            a = {k: v for k, v in clean_files.items() if k.startswith(prefix)}
            b = {k: v for k, v in faulted_files.items() if k.startswith(prefix)}
            assert a and a == b, f"{cid}: {prefix} differs"
    images = {r["image_id"] for r in faulted_rows.values()}
    assert not [k for k in faulted_files if k.startswith("images/") and k.split("/")[1] not in images]


@pytest.mark.soak
def test_faults_core_functions_idc_layout(tmp_path: Path) -> None:
    """The same catalogue in the flat IDC bucket layout, where folder names say nothing."""
    import shutil

    from hcc_shards.synth import generate_cohort
    from hcc_shards.synth.faults import assign_faults, inject_faults

    clean, faulted = tmp_path / "clean", tmp_path / "faulted"
    truth = generate_cohort(str(clean), patients=PATIENTS, size="small", layout="idc", seed=SEED, workers=2)
    shutil.copytree(clean, faulted)
    faults = inject_faults(str(faulted), truth, assign_faults(truth, list(CLASSIC_FAULTS)))
    cohorts = Cohorts(str(clean), str(faulted), truth, faults)
    test_faults_core_functions(cohorts)


def test_synth_command_injects_faults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hcc_shards.build.dryrun import plan_records
    from hcc_shards.cli import main as cli_main

    out = tmp_path / "cohort"
    assert cli_main(["synth", str(out), "--patients", "4", "--faults", "zero_byte,empty_seg"]) == 0
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("FAULT")]
    assert [ln.split()[2] for ln in printed] == ["zero_byte", "empty_seg"]
    codes = Counter(r["code"] for r in plan_records(str(out)) if r["kind"] == "quarantine")
    assert codes == Counter({"unreadable": 1, "empty_seg": 1})
    assert cli_main(["synth", str(tmp_path / "x"), "--patients", "1", "--faults", "no_such_fault"]) == 2
    assert not (tmp_path / "x").exists()


def test_fault_injection_is_reproducible(small_cohort: str, small_truth, tmp_path: Path) -> None:
    import shutil

    from hcc_shards.synth.faults import inject_faults

    assignment = {"HCC_001": Fault.MISSING_SLICE, "HCC_003": Fault.GANTRY_TILT, "HCC_004": Fault.TWO_SEGS}
    copies = []
    for name in ("a", "b"):
        shutil.copytree(small_cohort, tmp_path / name)
        copies.append(inject_faults(str(tmp_path / name), small_truth, assignment))
    assert copies[0] == copies[1]
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b") != files_of(small_cohort)

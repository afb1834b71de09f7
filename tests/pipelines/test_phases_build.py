"""Builds with --phases all: phase channels on the annotated grid, their phases against the
generator's truth, padding flagged, the reader's multi-channel patches and the nnU-Net export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import zarr
from pipeline_helpers import IN_PROCESS, Cohort, build

from hcc_shards.build.local import run_local
from hcc_shards.build.plan import BuildPlan, flag_values
from hcc_shards.export import export_nnunet
from hcc_shards.read import open_dataset
from hcc_shards.read.sampling import RandomPatches
from hcc_shards.read.stream import PatchStream
from hcc_shards.synth.plan import plan_patient

PHASE_ACCURACY_FLOOR = 0.9
"""Share of channels whose assigned phase must equal the generator's (docs/PHASES.md: measured 1.0)."""


def true_phases(cohort: Cohort) -> dict[tuple[str, int | None], str]:
    """(SeriesInstanceUID, AcquisitionNumber) -> the phase the generator rendered it in."""
    out = {}
    for patient in cohort.truth.patients:
        plan = plan_patient(cohort.truth.seed, int(patient.patient_id.split("_")[1]), cohort.truth.size)
        for study in plan.studies:
            for series in study.series:
                for acq, phase in series.acquisitions:
                    out[(series.series_uid, acq)] = phase
    return out


def images(out: Path) -> list[tuple[zarr.Group, dict]]:
    (version,) = (out / "versions").iterdir()
    groups = []
    for path in sorted((version / "images").iterdir()):
        group = zarr.open_group(str(path), mode="r")
        groups.append((group, dict(group.attrs)["hcc_shards"]))
    return groups


@pytest.fixture(scope="module")
def phases_build(tcia_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phases") / "out"
    summary = run_local(
        BuildPlan.from_flags(flag_values(input=tcia_cohort.root, output=str(out), phases="all")), workers=2
    )
    assert summary.committed and summary.cases_written == summary.cases_total > 0
    return out


def test_channels_on_the_annotated_grid_with_their_true_phase(
    phases_build: Path, tcia_cohort: Cohort
) -> None:
    truth = true_phases(tcia_cohort)
    right = total = 0
    stacked_seen = False
    for group, attrs in images(phases_build):
        entries = attrs["phases"]
        assert entries[0]["array"] == "0" and len(entries) >= 3  # pre, arterial, portal venous at least
        series = [e["series_instance_uid"] for e in entries]
        stacked_seen |= len(set(series)) < len(series)
        for n, entry in enumerate(entries):
            if n:
                assert entry["array"] == f"phases/{n}"
                arr = group[entry["array"]]
                assert arr.shape == group["0"].shape and arr.dtype == np.int16
            assert 0.0 <= entry["confidence"] <= 1.0 and entry["evidence"]
            right += entry["phase"] == truth[(entry["series_instance_uid"], entry["acquisition_number"])]
            total += 1
    assert stacked_seen, "the cohort's stacked-phase patient gives a channel from the annotated series"
    assert right / total >= PHASE_ACCURACY_FLOOR, f"{right} of {total} channels assigned their true phase"


def test_partial_channels_are_padded_and_flagged(phases_build: Path) -> None:
    partial = 0
    for group, attrs in images(phases_build):
        for entry in attrs["phases"][1:]:
            data = group[entry["array"]][...]
            padded = np.count_nonzero(data == -1024) / data.size
            if entry["coverage"] < 0.999:
                partial += 1
                assert "partial_coverage" in entry["flags"]
                assert padded >= 1 - entry["coverage"] - 1e-6  # every uncovered voxel holds the fill
            else:
                assert "partial_coverage" not in entry["flags"]
            assert "moved" not in entry["flags"]  # the generator's patients never move
    assert partial, "the cohort's series have different z extents: some channel must be partial"


def test_default_build_is_unchanged_by_the_option(tcia_cohort: Cohort, tmp_path: Path) -> None:
    plan = BuildPlan.from_flags(flag_values(input=tcia_cohort.root, output=str(tmp_path)))
    with_phases = BuildPlan.from_flags(
        flag_values(input=tcia_cohort.root, output=str(tmp_path), phases="all")
    )
    assert "phases" not in plan.config.to_dict()
    assert with_phases.config.config_hash() != plan.config.config_hash()


def test_reader_yields_multi_channel_patches(phases_build: Path) -> None:
    ds = open_dataset(str(phases_build))
    wanted = ("pre", "arterial", "portal_venous")
    stream = PatchStream(ds, RandomPatches(patch_size=(4, 16, 16)), channels=wanted, threads=0)
    for patch, _ in zip(stream, range(6), strict=False):
        assert patch.image.shape == (3, 4, 16, 16) and patch.label.shape == (4, 16, 16)
        assert patch.phases == wanted and patch.channel_present.all()
        case = ds.case(patch.spec.case_id)
        k = wanted.index("arterial")
        image, _ = case.read_region(patch.spec.start, patch.spec.stop)
        index = case.channel_for("arterial")
        expect = (
            image
            if index == 0
            else case.channel(index)[...][
                tuple(slice(max(0, a), b) for a, b in zip(patch.spec.start, patch.spec.stop, strict=True))
            ]
        )
        if all(a >= 0 for a in patch.spec.start) and all(
            b <= n for b, n in zip(patch.spec.stop, case.shape, strict=True)
        ):
            assert np.array_equal(patch.image[k], expect)
    whole = PatchStream(ds, RandomPatches(patch_size=(4, 8, 8)), channels="all", threads=0)
    batch = next(whole.batches(1))
    assert batch["image"].ndim == 5 and batch["channel_present"].all()
    plain = next(iter(PatchStream(ds, RandomPatches(patch_size=(4, 8, 8)), threads=0)))
    assert plain.image.shape == (4, 8, 8) and plain.phases is None and "phases" not in plain.as_dict()


def test_nnunet_export_writes_one_file_per_phase(phases_build: Path, tmp_path: Path) -> None:
    ds = open_dataset(str(phases_build))
    root = Path(export_nnunet(ds, str(tmp_path), 12, phases=["arterial", "portal_venous"]))
    doc = json.loads((root / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "CT", "1": "CT"}
    assert doc["hcc_shards_channels"] == {"0": "arterial", "1": "portal_venous"}
    assert doc["numTraining"] + len(doc.get("hcc_shards_skipped", [])) == len(ds)
    case = ds.case(ds.case_ids[0])
    for k, phase in enumerate(("arterial", "portal_venous")):
        nii = sitk.ReadImage(str(root / "imagesTr" / f"{case.case_id}_{k:04d}.nii.gz"))
        stored = np.asarray(case.channel(case.channel_for(phase)))
        assert np.array_equal(sitk.GetArrayFromImage(nii), stored)
    assert not list((root / "imagesTr").glob("*_0002.nii.gz"))


def test_beam_build_stores_the_same_channels(small_cohort: Cohort, tmp_path: Path) -> None:
    beam_out, local_out = tmp_path / "beam", tmp_path / "local"
    build(small_cohort.root, str(beam_out), "--phases=all", *IN_PROCESS)
    run_local(BuildPlan.from_flags(flag_values(input=small_cohort.root, output=str(local_out), phases="all")))
    beam, local = images(beam_out), images(local_out)
    assert [a["image_id"] for _, a in beam] == [a["image_id"] for _, a in local]
    for (_, a), (_, b) in zip(beam, local, strict=True):
        assert a["phases"] == b["phases"] and len(a["phases"]) >= 3

"""Builds with --phases all: phase channels on the annotated grid, their phases against the
generator's truth, padding flagged, the reader's multi-channel patches and the nnU-Net export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk
import zarr
from pipeline_helpers import IN_PROCESS, Cohort, build

from hcc_shards.build.local import run_local
from hcc_shards.build.plan import BuildPlan, flag_values
from hcc_shards.export import export_nnunet
from hcc_shards.features import FEATURE_LABELS, extractor, sitk_pair
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
        BuildPlan.from_flags(
            flag_values(input=tcia_cohort.root, output=str(out), phases="all", features=True)
        ),
        workers=2,
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


def _version(out: Path) -> Path:
    (version,) = (out / "versions").iterdir()
    return version


def test_manifest_and_card_show_each_case_phases(phases_build: Path) -> None:
    version = _version(phases_build)
    rows = pq.read_table(version / "manifest.parquet").to_pylist()
    by_image = {attrs["image_id"]: attrs["phases"] for _, attrs in images(phases_build)}
    sets: dict[str, int] = {}
    for row in rows:
        entries = by_image[row["image_id"]]
        assert row["phases"] == [e["phase"] for e in entries]
        assert row["phase_confidence"] == [e["confidence"] for e in entries]
        assert row["phase_flags"] == [f"{n}:{f}" for n, e in enumerate(entries) for f in e["flags"]]
        key = " + ".join(sorted(set(row["phases"])))
        sets[key] = sets.get(key, 0) + 1
    card = (version / "DATASET.md").read_text()
    assert f"{len(rows)} of {len(rows)} cases store phase channels" in card
    for key, n in sets.items():
        assert f"| {key} | {n} |" in card
    assert "| partial_coverage |" in card  # the cohort's series have different z extents


def test_features_per_phase_channel_equal_the_library(phases_build: Path) -> None:
    """One row per case, label and channel; a phase channel's masks leave its padding out."""
    version = _version(phases_build)
    table = pq.read_table(version / "features.parquet").to_pylist()
    ds = open_dataset(str(phases_build))
    ext = extractor()
    checked = 0
    for case_id in ds.case_ids[:2]:
        case = ds.case(case_id)
        label = np.asarray(case.label)
        for n, entry in enumerate(case.phases):
            image = np.asarray(case.image) if n == 0 else np.asarray(case.channel(n))
            mask = label if n == 0 else np.where(image == -1024, 0, label).astype(label.dtype)
            img, msk = sitk_pair(image, mask, case.geometry.spacing)
            for value, name in FEATURE_LABELS:
                got = [
                    t for t in table if t["case_id"] == case_id and t["label"] == name and t["channel"] == n
                ]
                if not np.any(mask == value):
                    assert not got or got[0]["error"]
                    continue
                (row,) = got
                assert row["phase"] == entry["phase"]
                direct = ext.execute(img, msk, label=value)
                for k in ("original_firstorder_Mean", "original_glcm_Contrast", "original_shape_VoxelVolume"):
                    np.testing.assert_allclose(row[k], float(np.asarray(direct[k])), rtol=1e-9, err_msg=k)
                checked += 1
    assert checked >= 6
    channels = {(t["case_id"], t["channel"]) for t in table}
    assert all((cid, n) in channels for cid in ds.case_ids for n in range(len(ds.case(cid).phases))), (
        "every channel of every case has feature rows"
    )


def _move_patient(root: Path, pixels_mm: float) -> str:
    """Shift the anatomy of one unannotated CT series of the annotated study by ``pixels_mm`` along
    x (the headers unchanged, as when the patient moved between acquisitions); its SeriesInstanceUID."""
    import pydicom

    datasets = []
    for path in sorted(root.rglob("*.dcm")):
        try:
            datasets.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
        except pydicom.errors.InvalidDicomError:
            continue
    seg = next(ds for _, ds in datasets if ds.Modality == "SEG")
    annotated = {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
    slices: dict[str, list[Path]] = {}
    for path, ds in datasets:
        if (
            ds.Modality == "CT"
            and ds.StudyInstanceUID == seg.StudyInstanceUID
            and ds.SeriesInstanceUID not in annotated
            and "LOCALIZER" not in list(ds.get("ImageType", []))
        ):
            slices.setdefault(ds.SeriesInstanceUID, []).append(path)
    series, paths = max(slices.items(), key=lambda kv: len(kv[1]))
    for path in paths:
        ds = pydicom.dcmread(path)
        assert not ds.file_meta.TransferSyntaxUID.is_compressed
        step = max(1, round(pixels_mm / float(ds.PixelSpacing[1])))
        ds.PixelData = np.roll(ds.pixel_array, step, axis=1).tobytes()
        ds.save_as(path)
    return series


def test_a_patient_who_moved_is_flagged(small_cohort: Cohort, tmp_path: Path) -> None:
    """No registration: the channel is stored as acquired, and the rigid check flags the motion."""
    root = tmp_path / "in"
    shutil.copytree(Path(small_cohort.root) / "HCC_001", root / "HCC_001")
    moved = _move_patient(root / "HCC_001", 8.0)
    out = tmp_path / "out"
    summary = run_local(BuildPlan.from_flags(flag_values(input=str(root), output=str(out), phases="all")))
    assert summary.committed and summary.cases_written >= 1
    flagged = []
    for _, attrs in images(out):
        for n, entry in enumerate(attrs["phases"][1:], start=1):
            if entry["series_instance_uid"] == moved:
                assert "moved" in entry["flags"] and entry["motion_shift_mm"][2] != 0, entry
                flagged.append(n)
            else:
                assert "moved" not in entry["flags"], entry
    assert flagged, "the moved series is a phase channel of the annotated image"
    rows = pq.read_table(_version(out) / "manifest.parquet").to_pylist()
    assert all(f"{flagged[0]}:moved" in r["phase_flags"] for r in rows)
    assert "| moved |" in (_version(out) / "DATASET.md").read_text()

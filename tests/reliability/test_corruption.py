"""Corruption: one flipped byte anywhere in any shard object is detected. The reader raises an error
naming the case, and ``hcc-shards verify OUTPUT`` reports every corrupted case (and only those)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from reliability_helpers import case_of_object, shard_objects, version_dir

from hcc_shards.cli import main as cli_main
from hcc_shards.errors import HccShardsError
from hcc_shards.read import open_dataset
from hcc_shards.verify import verify_dataset

CI_SAMPLES = 16
SOAK_SAMPLES = 1500


@pytest.fixture(scope="module")
def output(small_build: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corrupt") / "out"
    shutil.copytree(small_build, out)
    return out


def _read_everything(output: Path, case_id: str) -> None:
    case = open_dataset(str(output)).case(case_id)
    _ = case.image[...], case.label[...]
    for name in ("liver", "tumor", "portal_vein", "aorta"):
        case.foreground(name)


def _flip(path: Path, pos: int) -> bytes:
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[pos] ^= 0xFF
    path.write_bytes(bytes(flipped))
    return data


def _positions(output: Path, n: int, seed: int) -> list[tuple[Path, int]]:
    """``n`` (object, byte) pairs: every shard object at least once when n allows, bytes at random."""
    rng = random.Random(seed)
    objects = shard_objects(version_dir(output))
    picks = [objects[i % len(objects)] for i in range(n)] if n >= len(objects) else rng.sample(objects, n)
    return [(p, rng.randrange(p.stat().st_size)) for p in picks]


def _check_detected(output: Path, obj: Path, pos: int) -> None:
    case_id = case_of_object(version_dir(output), obj)
    original = _flip(obj, pos)
    try:
        with pytest.raises(HccShardsError) as info:
            _read_everything(output, case_id)
        assert case_id in str(info.value), f"{obj} @ {pos}: the error does not name the case: {info.value}"
        report = verify_dataset(str(output))
        assert report.corrupted_cases == (case_id,), f"{obj} @ {pos}: {report.problems}"
    finally:
        obj.write_bytes(original)


def test_clean_output_verifies(output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify_dataset(str(output))
    assert report.ok and report.cases == 3
    assert cli_main(["verify", str(output)]) == 0
    assert "3 ok, 0 corrupted" in capsys.readouterr().out
    for obj in shard_objects(version_dir(output)):
        _read_everything(output, case_of_object(version_dir(output), obj))


def test_every_shard_object_is_covered_by_a_checksum(output: Path) -> None:
    parts = [o.relative_to(version_dir(output)).parts for o in shard_objects(version_dir(output))]
    kinds = {"foreground" if "foreground" in p else p[2] for p in parts}
    assert kinds == {"0", "labels", "foreground"}


@pytest.mark.parametrize("sample", range(CI_SAMPLES))
def test_flipped_byte_is_detected(sample: int, output: Path) -> None:
    obj, pos = _positions(output, CI_SAMPLES, seed=20261127)[sample]
    _check_detected(output, obj, pos)


def test_verify_command_reports_every_corrupted_case(
    output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = version_dir(output)
    images = sorted(p.name for p in (version / "images").iterdir())
    saved = []
    cases = []
    try:
        for image in images[:2]:  # one flip in each of two images: an image shard and a label shard
            obj = sorted((version / "images" / image).rglob("c/*/*/*"))[0 if image == images[0] else -1]
            cases.append(case_of_object(version, obj))
            saved.append((obj, _flip(obj, obj.stat().st_size // 2)))
        cases = sorted(cases)
        assert cli_main(["verify", str(output)]) == 1
        out = capsys.readouterr().out
        assert (
            sorted(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("CORRUPT"))
            == cases
        )
        assert "1 ok, 2 corrupted" in out
    finally:
        for obj, data in saved:
            obj.write_bytes(data)
    assert verify_dataset(str(output)).ok


@pytest.mark.soak
def test_flipped_byte_sweep(output: Path) -> None:
    for obj, pos in _positions(output, SOAK_SAMPLES, seed=7):
        _check_detected(output, obj, pos)


def test_verify_command_on_something_that_is_not_a_dataset(tmp_path: Path) -> None:
    assert cli_main(["verify", str(tmp_path)]) == 2
    report = verify_dataset(str(tmp_path))
    assert not report.ok and "LATEST.json" in report.dataset_problem

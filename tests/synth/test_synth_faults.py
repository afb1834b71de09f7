"""The deflate bomb and coarse spacing faults: small, reproducible files that are valid DICOM."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import pydicom
import pytest

from hcc_shards.dicom.limits import DEFLATED_SYNTAX, deflated_start
from hcc_shards.synth.bomb import BOMB_INFLATED_BYTES, PRIVATE_CREATOR, deflate_bomb_bytes
from hcc_shards.synth.faults import COARSE_PIXEL_SPACING_MM, Fault, assign_faults, inject_faults

needs_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed"
)


def _errors(path: Path) -> list[str]:
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def damaged(tcia_cohort, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("new-faults") / "dicom"
    shutil.copytree(tcia_cohort.root, root)
    start = time.monotonic()
    faults = inject_faults(
        str(root),
        tcia_cohort.truth,
        assign_faults(tcia_cohort.truth, [Fault.DEFLATE_BOMB, Fault.COARSE_SPACING]),
    )
    seconds = time.monotonic() - start
    return root, tcia_cohort.root, {f.fault: f for f in faults}, seconds


def _inflated_start(data: bytes, n: int) -> bytes:
    start = deflated_start(io.BytesIO(data))
    assert start is not None
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:], n)


def test_the_deflate_bomb_is_small_fast_and_inflates_to_256_mib(damaged) -> None:
    root, _, faults, seconds = damaged
    bomb = faults[Fault.DEFLATE_BOMB.value]
    assert (bomb.code, bomb.stage, bomb.keeps_case) == ("too_large", "index", True)
    data = (root / bomb.path).read_bytes()
    assert len(data) < 400_000 and seconds < 10
    meta = pydicom.filereader.read_file_meta_info(root / bomb.path)
    assert meta.TransferSyntaxUID == DEFLATED_SYNTAX
    start = deflated_start(io.BytesIO(data))
    assert start is not None
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    chunk = data[start:]
    while chunk:  # a MiB at a time: the test holds none of the 256
        total += len(inflater.decompress(chunk, 1 << 20))
        chunk = inflater.unconsumed_tail
    assert inflater.eof and BOMB_INFLATED_BYTES < total < BOMB_INFLATED_BYTES + 64 * 1024


@needs_dciodvfy
def test_the_bomb_dataset_is_valid_dicom(damaged, tmp_path: Path) -> None:
    """dciodvfy here cannot read Deflated Explicit VR (pydicom's own deflated files fail the same way):
    a 1 KiB bomb of the same slice is inflated to Explicit VR Little Endian and checked, and the real
    bomb's inflated start is shown to be the same bytes."""
    root, clean, faults, _ = damaged
    bomb = faults[Fault.DEFLATE_BOMB.value]
    original = pydicom.dcmread(clean / bomb.path)
    small = deflate_bomb_bytes(original, 1024)
    ds = pydicom.dcmread(io.BytesIO(small))
    assert ds.private_block(0x0029, PRIVATE_CREATOR)[0x00].value == bytes(1024)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(tmp_path / "inflated.dcm", enforce_file_format=True)
    assert _errors(tmp_path / "inflated.dcm") == []
    real = (root / bomb.path).read_bytes()
    head = _inflated_start(small, 4096)
    at = head.index(b"\x29\x00\x00\x10OB")  # the private element's header: only its length differs
    assert _inflated_start(real, 4096)[: at + 8] == head[: at + 8]


@needs_dciodvfy
def test_coarse_spacing_files_pass_dciodvfy(damaged) -> None:
    root, _, faults, _ = damaged
    coarse = faults[Fault.COARSE_SPACING.value]
    assert (coarse.code, coarse.stage, coarse.keeps_case) == ("resampled_too_large", "resample", False)
    seg = pydicom.dcmread(root / coarse.path)
    spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == [COARSE_PIXEL_SPACING_MM] * 2
    for rel in coarse.touched:
        assert _errors(root / rel) == [], rel

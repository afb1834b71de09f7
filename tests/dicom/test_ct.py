"""CT decode: one real CT series encoded in every transfer syntax gives identical HU."""

from __future__ import annotations

import copy
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from builders import ct_dataset
from dicom_corpus import SEGS
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from hcc_shards.config import BuildConfig
from hcc_shards.dicom.ct import decode_ct, to_hu, transfer_syntax_supported
from hcc_shards.dicom.index import index_file
from hcc_shards.dicom.stack import check_stack
from hcc_shards.errors import QuarantineError
from hcc_shards.quarantine import Reason

CROP = (slice(200, 264), slice(180, 244))  # 64x64 of real abdomen, liver and fat included


def _real_slices() -> list[pydicom.Dataset]:
    out = []
    for path in sorted((SEGS / "ct-3slice").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        crop = np.ascontiguousarray(ds.pixel_array[CROP])
        ds.Rows, ds.Columns = crop.shape
        ds.PixelData = crop.tobytes()
        out.append(ds)
    return out


def _jpeg_lossless_pixel_data(pixels: np.ndarray, tmp: Path) -> bytes:
    """Encapsulated JPEG lossless (process 14, SV1) PixelData, encoded by GDCM through SimpleITK."""
    import SimpleITK as sitk

    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.SetFileName(str(tmp))
    writer.SetUseCompression(True)
    writer.SetCompressor("JPEG")
    writer.Execute(sitk.GetImageFromArray(pixels[None].astype(np.int16)))
    ds = pydicom.dcmread(tmp)
    if ds.file_meta.TransferSyntaxUID != JPEGLosslessSV1:
        raise RuntimeError(f"GDCM wrote {ds.file_meta.TransferSyntaxUID.name}, expected JPEG lossless SV1")
    return ds.PixelData


def _encode(ds: pydicom.Dataset, syntax: str, path: Path) -> None:
    ds = copy.deepcopy(ds)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(
            path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True, enforce_file_format=True
        )
        return
    if syntax == JPEGLosslessSV1:
        ds.PixelData = _jpeg_lossless_pixel_data(ds.pixel_array, path.with_suffix(".gdcm.dcm"))
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)


LOSSLESS = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("syntaxes")
    out = {}
    series = _real_slices()
    for syntax in LOSSLESS:
        folder = root / syntax.name.split()[0].replace(",", "")
        folder.mkdir(exist_ok=True)
        series_uid = generate_uid()
        paths = []
        for k, ds in enumerate(series):
            ds = copy.deepcopy(ds)
            ds.SeriesInstanceUID = series_uid
            path = folder / f"{syntax.name[:12].replace(' ', '_')}_{k}.dcm"
            _encode(ds, syntax, path)
            paths.append(path)
        out[str(syntax)] = paths
    return out


def _decode_files(paths: list[Path], config: BuildConfig) -> np.ndarray:
    headers = [index_file(str(p)) for p in paths]
    stack = check_stack(headers, config)
    return decode_ct(headers, stack.slices, config)


def test_every_lossless_syntax_gives_identical_hu(encoded):
    config = BuildConfig()
    hu = [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in _real_slices()]
    expected = np.clip(np.rint(np.stack(hu)), -1024, 3071)[::-1]  # files 01..03 run from head to feet
    seen = set()
    for syntax, paths in encoded.items():
        assert pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
        hu = _decode_files(paths, config)
        assert hu.dtype == np.int16
        np.testing.assert_array_equal(hu, expected, err_msg=f"transfer syntax {syntax}")
        seen.add(syntax)
    assert seen == {str(s) for s in LOSSLESS}


def test_jpeg_baseline_blockwise_constant_is_exact(tmp_path):
    """Baseline JPEG is lossy in general; an image constant on every 8x8 block, at quality 100,
    keeps only DC coefficients with quantisation step 1, so decoding must give it back exactly."""
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, size=(3, 4, 4)).astype(np.uint8)
    volume = np.kron(blocks, np.ones((1, 8, 8), dtype=np.uint8))
    series = dict(series_uid=generate_uid(), study_uid=generate_uid(), for_uid=generate_uid())
    paths = []
    for k, plane in enumerate(volume):
        ds = ct_dataset(plane, (0.0, 0.0, 2.5 * k), slope=8.0, intercept=-1024.0, instance=k + 1, **series)
        buf = io.BytesIO()
        Image.fromarray(plane, mode="L").save(buf, format="JPEG", quality=100, subsampling=0)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        path = tmp_path / f"jpeg_{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    hu = _decode_files(paths, BuildConfig())
    np.testing.assert_array_equal(hu, volume.astype(np.int32) * 8 - 1024)


def test_to_hu_rounds_and_clips():
    stored = np.array([[0, 1, 4000, 7000]], dtype=np.uint16)
    np.testing.assert_array_equal(to_hu(stored, 1.0, -1024.0, (-1024, 3071)), [[-1024, -1023, 2976, 3071]])
    np.testing.assert_array_equal(to_hu(stored, 0.5, -1024.4, (-1024, 3071)), [[-1024, -1024, 976, 2476]])
    padded = np.array([[-2000, -3024, 50]], dtype=np.int16)
    np.testing.assert_array_equal(to_hu(padded, 1.0, 0.0, (-1024, 3071)), [[-1024, -1024, 50]])


def test_unknown_transfer_syntax_is_quarantined(tmp_path):
    assert not transfer_syntax_supported("1.2.3.4.5.6")
    ds = pydicom.dcmread(sorted((SEGS / "ct-3slice").glob("*.dcm"))[0])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
    ds.PixelData = encapsulate([b"\x00" * 16])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "mpeg.dcm"
    ds.save_as(path, enforce_file_format=True)
    h = index_file(str(path))
    with pytest.raises(QuarantineError) as err:
        decode_ct([h], check_stack([h], BuildConfig()).slices, BuildConfig())
    assert err.value.code == Reason.UNSUPPORTED_TRANSFER_SYNTAX
    assert "1.2.840.10008.1.2.4.100" in err.value.message


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize(("slope", "intercept"), [(None, -1024.0), (0.0, -1024.0), (float("nan"), 0.0)])
def test_invalid_rescale_is_quarantined(tmp_path, slope, intercept):
    ds = pydicom.dcmread(sorted((SEGS / "ct-3slice").glob("*.dcm"))[0])
    if slope is None:
        del ds.RescaleSlope
    else:
        ds.RescaleSlope = str(slope)
    ds.RescaleIntercept = str(intercept)
    path = tmp_path / "rescale.dcm"
    ds.save_as(path, enforce_file_format=True)
    h = index_file(str(path))
    with pytest.raises(QuarantineError) as err:
        decode_ct([h], check_stack([h], BuildConfig()).slices, BuildConfig())
    assert err.value.code == Reason.INVALID_RESCALE


def test_multiframe_ct_decodes_like_its_single_frame_series(corpus_headers):
    for size in ("23x38x3", "24x38x3"):
        config = BuildConfig()
        mf = corpus_headers[f"dcmqi/data/segmentations/{size}/multiframe/mf.dcm"]
        singles = [corpus_headers[f"dcmqi/data/segmentations/{size}/image/IMG000{k}.dcm"] for k in (1, 2, 3)]
        mf_stack, sf_stack = check_stack([mf], config), check_stack(singles, config)
        assert [s.frame for s in mf_stack.slices] == [1, 2, 3]
        assert mf_stack.block_geometry(mf_stack.blocks[0]).is_close(
            sf_stack.block_geometry(sf_stack.blocks[0])
        )
        np.testing.assert_array_equal(
            decode_ct([mf], mf_stack.slices, config), decode_ct(singles, sf_stack.slices, config)
        )


def test_hu_clip_is_configurable(corpus_headers):
    headers = [corpus_headers[f"dcmqi/data/segmentations/ct-3slice/0{k}.dcm"] for k in (1, 2, 3)]
    config = replace(BuildConfig(), hu_clip=(-200, 300))
    hu = decode_ct(headers, check_stack(headers, config).slices, config)
    assert hu.min() == -200 and hu.max() == 300

"""Opening datasets, manifests, lazy arrays, regions, padding, geometry, checksums (thin reader env)."""

import json
import os
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
from damage import first_image_chunk, flip_byte

from hcc_shards.errors import CorruptChunkError, FormatError
from hcc_shards.read import IMAGE_PAD, LABEL_PAD, open_dataset

pytestmark = pytest.mark.reader_env


def test_open_follows_latest_and_version(mini_root, mini_cases):
    ds = open_dataset(mini_root)
    assert ds.version == "0123456789ab"
    assert ds.case_ids == ("A", "B", "C")
    assert ds.label_names == {1: "liver", 2: "tumor", 3: "portal_vein", 4: "aorta"}
    assert open_dataset(mini_root, version="0123456789ab").case_ids == ds.case_ids
    assert open_dataset(f"{mini_root}/versions/0123456789ab").case_ids == ds.case_ids
    assert ds.shapes.tolist() == [list(c.image.shape) for c in mini_cases]


def test_manifest_filter(mini_root):
    ds = open_dataset(mini_root)
    assert ds.filter(split="train").case_ids == ("A", "B")
    assert ds.filter(split=["val", "test"]).case_ids == ("C",)
    assert ds.filter(pc.field("voxels_tumor") > 0, split="train").case_ids == ("A", "B")
    assert ds.filter(case_id="B").manifest.num_rows == 1
    with pytest.raises(KeyError, match="no manifest column 'nope'"):
        ds.filter(nope=1)
    with pytest.raises(KeyError, match="no case 'Z'"):
        ds.case("Z")


def test_arrays_equal_source_under_slicing(mini_root, mini_cases):
    ds = open_dataset(mini_root)
    for src in mini_cases:
        case = ds.case(src.case_id)
        assert case.image.shape == src.image.shape and case.image.dtype == np.int16
        np.testing.assert_array_equal(case.image[...], src.image)
        np.testing.assert_array_equal(case.label[...], src.label)
        np.testing.assert_array_equal(np.asarray(case.label), src.label)
        np.testing.assert_array_equal(case.image[1:5, ::3, -7], src.image[1:5, ::3, -7])
        np.testing.assert_array_equal(case.label[-1, 2:, :9], src.label[-1, 2:, :9])
        with pytest.raises(IndexError, match="out of bounds"):
            case.image[src.image.shape[0]]


def test_read_region_pads_outside_the_volume(mini_root, mini_cases):
    src = mini_cases[0]
    case = open_dataset(mini_root).case("A")
    start, stop = (-3, 40, -5), (9, 60, 12)
    image, label = case.read_region(start, stop)
    assert image.shape == label.shape == (12, 20, 17)
    expected_img = np.full((12, 20, 17), IMAGE_PAD, np.int16)
    expected_lbl = np.full((12, 20, 17), LABEL_PAD, np.uint8)
    expected_img[3:, :8, 5:] = src.image[0:9, 40:48, 0:12]
    expected_lbl[3:, :8, 5:] = src.label[0:9, 40:48, 0:12]
    np.testing.assert_array_equal(image, expected_img)
    np.testing.assert_array_equal(label, expected_lbl)
    img7, _ = case.read_region(start, stop, image_pad=7)
    assert img7[0, 0, 0] == 7 and img7[5, 3, 9] == src.image[2, 43, 4]


def test_geometry_metadata_and_foreground(mini_root, mini_cases):
    ds = open_dataset(mini_root)
    case = ds.case("B")
    src = mini_cases[1]
    assert case.geometry.shape == src.image.shape
    assert case.geometry.spacing == pytest.approx(src.spacing)
    assert case.geometry.origin == pytest.approx(src.origin)
    assert case.metadata["split"] == "train" and case.metadata["patient_id"] == "B"
    counts = case.foreground_counts()
    assert counts["portal_vein"] == 0 and counts["liver"] == int((src.label == 1).sum())
    for value, name in ds.label_names.items():
        locs = case.foreground(name)
        assert locs.dtype == np.int32 and locs.shape[1] == 3
        assert np.all(src.label[tuple(locs.T)] == value)
        assert (len(locs) > 0) == (counts[name] > 0)


def test_blosc_dataset_reads_the_same(mini_blosc_root, mini_cases):
    ds = open_dataset(mini_blosc_root)
    for src in mini_cases:
        case = ds.case(src.case_id)
        assert case.image.meta.compressor == "blosc" and case.image.meta.chunk_shape == (4, 8, 8)
        np.testing.assert_array_equal(case.image[...], src.image)
        np.testing.assert_array_equal(case.label[2:, 3:17, 1:], src.label[2:, 3:17, 1:])


def _copy(tmp_path, root):
    dst = tmp_path / "copy"
    shutil.copytree(root, dst)
    return str(dst)


def test_corrupted_chunk_names_the_case(tmp_path, mini_root):
    root = _copy(tmp_path, mini_root)
    ds = open_dataset(root)
    case = ds.case("A")
    shard, offset, _ = first_image_chunk(root, "0123456789ab", "A", case.image.meta.index_nbytes)
    flip_byte(shard, offset + 5)
    with pytest.raises(CorruptChunkError, match=r"case 'A' image: chunk \(0, 0, 0\).*crc32c mismatch"):
        case.image[0:2, 0:2, 0:2]
    # Chunks that do not touch the damaged one still read.
    assert case.image[10:12, 20:22, 20:22].shape == (2, 2, 2)


def test_corrupted_shard_index_is_detected(tmp_path, mini_root):
    root = _copy(tmp_path, mini_root)
    shard = os.path.join(root, "versions/0123456789ab/cases/B/labels/segmentation/0/c/0/0/0")
    with open(shard, "r+b") as f:
        f.write(b"\x01\x02\x03")
    with pytest.raises(CorruptChunkError, match=r"case 'B' label.*shard index: crc32c mismatch"):
        open_dataset(root).case("B").label[0, 0, 0]


def _write_json(path, doc):
    with open(path, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))


@pytest.mark.parametrize(
    ("target", "content", "message"),
    [
        ("LATEST.json", "{not json", r"LATEST.json: not valid JSON"),
        (
            "LATEST.json",
            {"format_version": 3, "path": "versions/x"},
            r"format_version 3 is not supported; this reader reads versions 1 and 2",
        ),
        ("LATEST.json", {"format_version": 1}, r"expected a non-empty 'path' string, got None"),
        ("versions/0123456789ab/dataset.json", {"format_version": 1}, r"expected a non-empty 'config_hash'"),
        ("versions/0123456789ab/dataset.json", [1, 2], r"expected a JSON object, got list"),
        (
            "versions/0123456789ab/manifest.parquet",
            "not parquet",
            r"manifest.parquet: not a readable parquet",
        ),
    ],
)
def test_malformed_dataset_raises_format_error(tmp_path, mini_root, target, content, message):
    root = _copy(tmp_path, mini_root)
    _write_json(os.path.join(root, target), content)
    with pytest.raises(FormatError, match=message):
        open_dataset(root)


def test_missing_pointer_and_columns(tmp_path, mini_root):
    with pytest.raises(FormatError, match=r"neither LATEST\.json nor dataset\.json"):
        open_dataset(str(tmp_path))
    import pyarrow.parquet as pq

    root = _copy(tmp_path, mini_root)
    path = os.path.join(root, "versions/0123456789ab/manifest.parquet")
    pq.write_table(pq.read_table(path).drop(["shape_zyx"]), path)
    with pytest.raises(FormatError, match=r"missing columns \['shape_zyx'\]"):
        open_dataset(root)


def test_absent_shard_reads_as_fill(tmp_path, mini_root, mini_cases):
    root = _copy(tmp_path, mini_root)
    os.remove(os.path.join(root, "versions/0123456789ab/cases/A/0/c/0/1/0"))  # z 0-16, y 32-64, x 0-32
    image = open_dataset(root).case("A").image[...]
    assert np.all(image[0:16, 32:48, 0:32] == -1024)
    np.testing.assert_array_equal(image[16:], mini_cases[0].image[16:])
    np.testing.assert_array_equal(image[:16, :32], mini_cases[0].image[:16, :32])

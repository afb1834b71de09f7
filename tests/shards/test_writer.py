"""write_case: OME-Zarr validity, identical arrays in tensorstore and zarr-python, idempotence, QC image."""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace

import fsspec
import numpy as np
import pytest
import tensorstore as ts
import zarr
from ome_zarr_models.v05 import Image, ImageLabel, Labels
from phantoms import default_structures, make_case
from PIL import Image as PILImage

from hcc_shards.case import Case
from hcc_shards.config import BuildConfig
from hcc_shards.errors import FormatError
from hcc_shards.geometry import Geometry
from hcc_shards.labels import LABELS
from hcc_shards.resample import resample_case
from hcc_shards.shards.foreground import class_foreground
from hcc_shards.shards.writer import (
    case_attributes,
    content_checksum,
    open_store,
    read_complete_case,
    write_case,
)

CONFIG = BuildConfig(target_spacing=(2.5, 2.5, 2.5), chunk_shape=(16, 32, 32), shard_shape=(32, 64, 64))


@pytest.fixture(scope="module")
def case():
    raw = make_case((24, 96, 96), (5.0, 2.0, 2.0), structures=default_structures(scale=0.5))
    return resample_case(raw, CONFIG.target_spacing, CONFIG)


@pytest.fixture(scope="module")
def written(case, tmp_path_factory):
    version = str(tmp_path_factory.mktemp("out") / "versions" / CONFIG.config_hash())
    row = write_case(case, version, CONFIG, split="val")
    return version, row


def _text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _group(version: str, case: Case, storage_options=None) -> zarr.Group:
    """The case's image group (format 2: ``images/<image_id>``)."""
    return zarr.open_group(
        open_store(f"{version}/images/{case.stored_image_id}", storage_options, read_only=True), mode="r"
    )


def _label(case: Case) -> str:
    """The case's label image, relative to its image group."""
    return f"labels/{case.case_id}"


def test_row_describes_the_case(case, written):
    _, row = written
    assert (
        row.case_id == case.case_id
        and row.split == "val"
        and row.path == f"images/{case.stored_image_id}/labels/{case.case_id}"
    )
    assert row.image_path == f"images/{case.stored_image_id}" and row.image_id == case.stored_image_id
    assert row.shape_zyx == case.geometry.shape and row.source_shape_zyx == (24, 96, 96)
    for lab in LABELS:
        n = int((case.label == lab.value).sum())
        assert row.voxels(lab.name) == n
        assert row.volume_ml(lab.name) == pytest.approx(n * case.geometry.voxel_volume_ml)
    fg = case.image[case.label > 0]
    assert row.hu_mean == pytest.approx(fg.mean())
    assert row.hu_p005 <= row.hu_mean <= row.hu_p995


def test_validates_with_ome_zarr_models(case, written):
    version, _ = written
    g = _group(version, case)
    image = Image.from_zarr(g)
    ms = image.attributes.ome.multiscales[0]
    transforms = ms.datasets[0].coordinateTransformations
    assert list(transforms[0].scale) == list(case.geometry.spacing)
    Labels.from_zarr(g["labels"])
    seg = ImageLabel.from_zarr(g[_label(case)])
    colours = {c.label_value: tuple(c.rgba) for c in seg.attributes.ome.image_label.colors}
    assert colours == {1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 3: (0, 0, 255, 255), 4: (255, 255, 0, 255)}
    names = {p.label_value: p.model_extra.get("name") for p in seg.attributes.ome.image_label.properties}
    assert names == {1: "liver", 2: "tumor", 3: "portal_vein", 4: "aorta"}


def test_world_geometry_in_attributes(case, written):
    version, _ = written
    attrs = _group(version, case).attrs.asdict()
    h = attrs["hcc_shards"]
    assert h["format_version"] == 2
    g = Geometry.from_dict(h["geometry"])
    assert g.is_close(case.geometry, atol_mm=1e-9)
    np.testing.assert_array_equal(np.asarray(h["geometry"]["affine"]), case.geometry.affine)
    # OME scale and translation with the direction give back the world position of every voxel.
    t = attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    scale, trans = np.asarray(t[0]["scale"]), np.asarray(t[1]["translation"])
    idx = np.array([3.0, 5.0, 7.0])
    np.testing.assert_allclose(g.direction @ (scale * idx + trans), case.geometry.index_to_world(idx)[0])
    assert h["image_provenance"]["patient_id"] == case.provenance.patient_id
    assert h["annotations"] == [case.case_id]


def test_arrays_sharded_with_checksums(case, written):
    version, _ = written
    meta = json.loads(_text(f"{version}/images/{case.stored_image_id}/0/zarr.json"))
    assert meta["data_type"] == "int16" and meta["fill_value"] == -1024
    shard = meta["codecs"][0]
    assert shard["name"] == "sharding_indexed"
    cfg = shard["configuration"]
    assert cfg["index_location"] == "start" and cfg["chunk_shape"] == list(CONFIG.chunk_shape)
    assert [c["name"] for c in cfg["codecs"]] == ["bytes", "blosc", "crc32c"]
    assert cfg["codecs"][1]["configuration"]["cname"] == "lz4"
    assert cfg["codecs"][1]["configuration"]["shuffle"] == CONFIG.image_shuffle == "bitshuffle"
    assert [c["name"] for c in cfg["index_codecs"]] == ["bytes", "crc32c"]
    lmeta = json.loads(_text(f"{version}/images/{case.stored_image_id}/{_label(case)}/0/zarr.json"))
    assert lmeta["data_type"] == "uint8"
    lcodecs = lmeta["codecs"][0]["configuration"]["codecs"]
    assert lcodecs[1]["configuration"]["shuffle"] == "shuffle"


def test_tensorstore_and_zarr_python_read_identical_arrays(case, written):
    version, _ = written
    g = _group(version, case)
    for path, want in (("0", case.image), (f"{_label(case)}/0", case.label)):
        z = g[path][...]
        spec = {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": f"{version}/images/{case.stored_image_id}/{path}/"},
        }
        t = ts.open(spec, read=True).result().read().result()
        np.testing.assert_array_equal(z, want)
        np.testing.assert_array_equal(t, want)
        # A patch that crosses chunk and shard boundaries.
        sl = (slice(10, 40), slice(20, 70), slice(30, 65))
        np.testing.assert_array_equal(ts.open(spec, read=True).result()[sl].read().result(), want[sl])


def test_foreground_arrays_and_checksum(case, written):
    version, row = written
    g = _group(version, case)
    fg = class_foreground(
        case.label,
        case_id=case.case_id,
        seed=CONFIG.seed,
        min_samples=CONFIG.class_locations_samples,
        fraction=CONFIG.class_locations_fraction,
    )
    image_attrs = g.attrs.asdict()["hcc_shards"]
    attrs = g[_label(case)].attrs.asdict()["hcc_shards"]
    assert attrs["annotated_labels"] == [lab.name for lab in LABELS]
    for lab in LABELS:
        stored = g[f"{_label(case)}/foreground/{lab.name}"][...]
        np.testing.assert_array_equal(stored, fg[lab.name].locations)
        assert attrs["foreground"][lab.name]["count"] == row.voxels(lab.name)
        assert attrs["foreground"][lab.name]["bbox_zyx"] == fg[lab.name].bbox_list()
        if stored.size:
            z, y, x = stored.T
            assert np.all(case.label[z, y, x] == lab.value)
    # The checksum is recomputable from what is stored.
    base = case_attributes(case, fg, CONFIG)
    assert {k: v for k, v in attrs.items() if k != "qc_flags"} == json.loads(json.dumps(base))
    merged = {**image_attrs, **base}
    assert content_checksum(g["0"][...], g[f"{_label(case)}/0"][...], fg, merged) == row.checksum
    marker = json.loads(_text(f"{version}/complete/{case.stored_image_id}.json"))
    assert marker["cases"][0]["checksum"] == row.checksum and marker["config_hash"] == CONFIG.config_hash()


def test_rewrite_is_a_noop_and_partial_case_is_replaced(case, written, tmp_path):
    version, row = written
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(version) for f in fs)
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    assert write_case(case, version, CONFIG, split="val") == row
    assert read_complete_case(version, case.case_id, CONFIG, image_id=case.stored_image_id) == row
    assert [os.stat(f).st_mtime_ns for f in files] == mtimes
    # An interrupted write (arrays without marker, plus a stray object) is wiped and redone.
    other = str(tmp_path / "v")
    write_case(case, other, CONFIG, split="val")
    os.remove(f"{other}/complete/{case.stored_image_id}.json")
    stray = f"{other}/images/{case.stored_image_id}/0/c/9/9/9"
    os.makedirs(os.path.dirname(stray))
    with open(stray, "wb") as f:
        f.write(b"junk")
    assert read_complete_case(other, case.case_id, CONFIG, image_id=case.stored_image_id) is None
    assert write_case(case, other, CONFIG, split="val") == row
    assert not os.path.exists(stray)
    # Another build's marker in this directory is an error, not a silent reuse.
    with pytest.raises(FormatError, match="config_hash"):
        read_complete_case(other, case.case_id, replace(CONFIG, seed=5), image_id=case.stored_image_id)


def test_wrong_spacing_is_refused(case, tmp_path):
    config = replace(CONFIG, target_spacing=(3.0, 2.5, 2.5))
    with pytest.raises(ValueError, match=r"spacing \(2.5, 2.5, 2.5\) differs .* \(3.0, 2.5, 2.5\)"):
        write_case(case, str(tmp_path), config, split="train")


def test_qc_png_shows_the_overlay(case, written):
    version, _ = written
    png = PILImage.open(f"{version}/qc/{case.case_id}.png").convert("RGB")
    rgb = np.asarray(png).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert png.height >= 256 and png.width > 3 * 200
    assert ((r > g + 60) & (r > b + 60)).sum() > 500, "liver red"
    assert ((g > r + 60) & (g > b + 60)).sum() > 100, "tumour green"
    assert ((b > r + 60) & (b > g + 60)).sum() > 10, "portal vein blue"
    assert ((r > b + 60) & (g > b + 60)).sum() > 10, "aorta yellow"


@pytest.mark.parametrize("backend", ["memory", "gcs", "s3"])
def test_object_stores(case, backend, request):
    if backend == "memory":
        version, options = f"memory://writer-{os.getpid()}/versions/v", None
    else:
        emulator = request.getfixturevalue(backend)
        version = emulator.url(emulator.make_bucket(f"writer-{backend}").split("://")[1], "versions", "v")
        options = emulator.storage_options
    row = write_case(case, version, CONFIG, options, split="train")
    assert read_complete_case(version, case.case_id, CONFIG, options, image_id=case.stored_image_id) == row
    g = _group(version, case, options)
    np.testing.assert_array_equal(g[f"{_label(case)}/0"][...], case.label)
    Image.from_zarr(g)
    fs, path = fsspec.core.url_to_fs(f"{version}/qc/{case.case_id}.png", **(options or {}))
    assert PILImage.open(io.BytesIO(fs.cat_file(path))).format == "PNG"


def test_zstd_option_reads_the_same(case, tmp_path):
    config = replace(CONFIG, compressor="zstd", compression_level=3)
    version = str(tmp_path / "zstd")
    write_case(case, version, config, split="train")
    meta = json.loads(_text(f"{version}/images/{case.stored_image_id}/0/zarr.json"))
    inner = [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]
    assert inner == ["bytes", "zstd", "crc32c"]
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": f"{version}/images/{case.stored_image_id}/0/"},
    }
    np.testing.assert_array_equal(ts.open(spec, read=True).result().read().result(), case.image)

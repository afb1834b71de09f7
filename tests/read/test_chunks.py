"""zarr.json parsing and chunk decoding without zarr-python: errors name the value found."""

import crc32c
import numpy as np
import pytest
import zstandard

from hcc_shards.errors import CorruptChunkError, FormatError
from hcc_shards.read.chunks import decode_chunk, parse_array_meta

pytestmark = pytest.mark.reader_env


def _doc(**over):
    doc = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [10, 20],
        "data_type": "int16",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [5, 20]}},
        "fill_value": -1024,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "zstd"},
            {"name": "crc32c"},
        ],
    }
    doc.update(over)
    return doc


def test_plain_array_metadata():
    meta = parse_array_meta(_doc(), where="x")
    assert (meta.shape, meta.chunk_shape, meta.compressor, meta.chunk_crc, meta.sharded) == (
        (10, 20),
        (5, 20),
        "zstd",
        True,
        False,
    )
    assert meta.object_key((1, 0)) == "c/1/0" and meta.fill_value == -1024
    v2 = parse_array_meta(
        _doc(chunk_key_encoding={"name": "v2", "configuration": {"separator": "."}}), where="x"
    )
    assert v2.object_key((1, 0)) == "1.0"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"zarr_format": 2}, r"expected zarr_format 3 and node_type 'array', got 2"),
        ({"codecs": [{"name": "transpose"}]}, r"must start with 'bytes', got \['transpose'\]"),
        (
            {"codecs": [{"name": "bytes"}, {"name": "gzip"}]},
            r"expected bytes \[\+ one of \['zstd', 'blosc'\]\] \[\+ crc32c\], got codecs \['bytes', 'gzip'\]",
        ),
        ({"chunk_grid": {"name": "rectilinear"}}, r"expected a 'regular' chunk grid, got 'rectilinear'"),
        ({"data_type": "complex-thing"}, r"unsupported data_type 'complex-thing'"),
        ({"shape": [10]}, r"chunk shape \(5, 20\) does not match array shape \(10,\)"),
        (
            {
                "codecs": [
                    {
                        "name": "sharding_indexed",
                        "configuration": {"chunk_shape": [3, 20], "codecs": [], "index_codecs": []},
                    }
                ]
            },
            r"shard shape \(5, 20\) must be a multiple of inner chunk shape \(3, 20\)",
        ),
    ],
)
def test_malformed_metadata_is_named(over, message):
    with pytest.raises(FormatError, match=message):
        parse_array_meta(_doc(**over), where="case X zarr.json")


def test_decode_checks_crc_and_size():
    meta = parse_array_meta(_doc(), where="x")
    data = np.arange(100, dtype="<i2").reshape(5, 20)
    body = zstandard.ZstdCompressor().compress(data.tobytes())
    good = body + crc32c.crc32c(body).to_bytes(4, "little")
    np.testing.assert_array_equal(decode_chunk(meta, good), data)
    with pytest.raises(CorruptChunkError, match=r"^chunk 7: crc32c mismatch"):
        decode_chunk(meta, good[:-1] + bytes([good[-1] ^ 1]), what="chunk 7")
    short = zstandard.ZstdCompressor().compress(data.tobytes()[:100])
    with pytest.raises(CorruptChunkError, match="decoded 100 bytes, expected 200"):
        decode_chunk(meta, short + crc32c.crc32c(short).to_bytes(4, "little"))

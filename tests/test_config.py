import pytest

from hcc_shards.config import BuildConfig
from hcc_shards.errors import ConfigError, QuarantineError
from hcc_shards.quarantine import QuarantineRecord, Reason


def test_config_roundtrip_and_hash_changes():
    c = BuildConfig(target_spacing=(2.5, 0.8, 0.8))
    assert BuildConfig.from_dict(c.to_dict()) == c
    assert c.config_hash() == BuildConfig(target_spacing=(2.5, 0.8, 0.8)).config_hash()
    assert c.config_hash() != BuildConfig(target_spacing=(2.5, 0.7, 0.8)).config_hash()
    assert "pseudonymize_key" not in c.to_dict()
    assert c.config_hash() != BuildConfig(target_spacing=(2.5, 0.8, 0.8), pseudonymize_key="k").config_hash()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_spacing": (1, 0, 1)}, "three positive"),
        ({"chunk_shape": (32, 64, 64), "shard_shape": (100, 512, 512)}, "multiple of chunk_shape"),
        ({"split_fractions": (0.5, 0.1, 0.1)}, "sum to 1"),
        ({"compressor": "lz4"}, "'zstd' or 'blosc'"),
    ],
)
def test_config_errors_name_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BuildConfig(**kwargs)


def test_quarantine_error_pickles_with_code():
    import pickle

    err = pickle.loads(pickle.dumps(QuarantineError(Reason.EMPTY_SEG, "no voxels")))
    assert err.code == "empty_seg" and "no voxels" in str(err)


def test_quarantine_record_rejects_unknown_code():
    with pytest.raises(ValueError, match="unknown quarantine code"):
        QuarantineRecord(code="oops", message="", stage="index")
    r = QuarantineRecord(code=Reason.NOT_DICOM, message="m", stage="index", details=(("a", "1"),))
    assert QuarantineRecord.from_dict(r.to_dict()) == r


def test_storage_options_flag_rejects_non_objects():
    import argparse

    from hcc_shards.commands import storage_options_of

    assert storage_options_of(argparse.Namespace(storage_options=None)) is None
    assert storage_options_of(argparse.Namespace(storage_options='{"anon": true}')) == {"anon": True}
    for bad in ("{anon}", "[1, 2]"):
        with pytest.raises(SystemExit, match="must be a JSON object"):
            storage_options_of(argparse.Namespace(storage_options=bad))

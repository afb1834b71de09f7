"""Sliding-window stitching: an identity model gives the volume back exactly (numpy and torch)."""

import numpy as np
import pytest

from hcc_shards.read.infer import Stitcher, gaussian_importance, sliding_window_inference, window_starts

pytestmark = pytest.mark.reader_env

SHAPE = (19, 37, 30)
WINDOW = (8, 16, 12)


def _volume() -> np.ndarray:
    return np.random.default_rng(3).integers(-1024, 3071, size=SHAPE).astype(np.int16)


def test_window_starts_cover_every_voxel_and_overlap():
    starts = window_starts(SHAPE, WINDOW, 0.5)
    hits = np.zeros(SHAPE, dtype=np.int64)
    for s in starts:
        hits[tuple(slice(a, a + w) for a, w in zip(s, WINDOW, strict=True))] += 1
    assert hits.min() >= 1 and hits.max() > 1
    assert starts[0] == (0, 0, 0)
    assert starts[-1] == tuple(n - w for n, w in zip(SHAPE, WINDOW, strict=True))


def test_gaussian_importance_peaks_at_the_centre_and_stays_positive():
    w = gaussian_importance((9, 16, 5))
    assert w.dtype == np.float32 and w.shape == (9, 16, 5)
    assert w.max() == 1.0 and w.min() > 0
    assert w[4, 7, 2] == pytest.approx(w[4, 8, 2])  # symmetric about the centre of an even axis
    assert w[4, 7, 2] > w[0, 7, 2] > 0
    tiny = gaussian_importance((64, 64, 64), sigma_scale=0.01)
    assert tiny.min() > 0


@pytest.mark.parametrize("weighting", ["gaussian", "constant"])
def test_identity_model_stitches_back_to_the_volume_exactly(weighting):
    volume = _volume()
    calls = []

    def identity(batch):
        calls.append(batch.shape[0])
        return batch.astype(np.float64)

    out = sliding_window_inference(volume, identity, WINDOW, overlap=0.5, batch_size=3, weighting=weighting)
    assert out.shape == SHAPE
    assert np.array_equal(out, volume.astype(np.float64))
    assert sum(calls) == len(window_starts(SHAPE, WINDOW, 0.5)) and max(calls) == 3


def test_one_hot_identity_gives_the_labels_back_and_padded_windows_are_cropped():
    labels = np.random.default_rng(4).integers(0, 5, size=(5, 9, 7)).astype(np.uint8)

    def one_hot(batch):
        # Padded crops are filled with 255: no channel, so they must never reach the volume.
        return (batch[:, None] == np.arange(5)[None, :, None, None, None]).astype(np.float32)

    out = sliding_window_inference(labels, one_hot, (8, 12, 12), pad_value=255, output="labels")
    assert out.dtype == np.uint8 and np.array_equal(out, labels)


def test_stitcher_refuses_uncovered_voxels_and_mismatched_windows():
    st = Stitcher(SHAPE, WINDOW)
    st.add((0, 0, 0), np.ones(WINDOW))
    with pytest.raises(ValueError, match="covered by no window"):
        st.result()
    with pytest.raises(ValueError, match="channels"):
        st.add((0, 0, 0), np.ones((2, *WINDOW)))
    with pytest.raises(ValueError, match="outside the volume"):
        st.add((SHAPE[0], 0, 0), np.ones(WINDOW))


def test_torch_path_accumulates_on_the_tensor_device():
    torch = pytest.importorskip("torch")
    volume = torch.from_numpy(_volume())
    out = sliding_window_inference(volume, lambda b: b.to(torch.float64)[:, None], WINDOW, batch_size=4)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, *SHAPE)
    assert torch.equal(out[0], volume.to(torch.float64))
    st = Stitcher(SHAPE, WINDOW)
    for s in window_starts(SHAPE, WINDOW, 0.25):
        crop = volume[tuple(slice(a, a + w) for a, w in zip(s, WINDOW, strict=True))]
        st.add(s, torch.stack([(crop < 0), (crop >= 0)]).to(torch.float32))
    assert torch.equal(st.labels(), (volume >= 0).to(torch.uint8))

"""Measure inner chunk shape and compressor for training-patch reads (the numbers in docs/FORMAT.md).

Run: ``python -m hcc_shards.shards.measure [--patches 200]``. It builds a CT-like phantom (soft
tissue with 12 HU noise inside an air background, resampled grid 180x460x460), encodes it per
chunk with each candidate codec, then times random patch reads the way a reader that decodes only
the touched chunks does: crc32c check, decompress, copy into the patch; one thread.
"""

from __future__ import annotations

import argparse
import itertools
import time

import crc32c
import numcodecs
import numpy as np

CHUNKS = [(32, 64, 64), (64, 64, 64), (16, 128, 128), (32, 128, 128)]
PATCHES = [(90, 128, 128), (128, 128, 128), (96, 160, 160)]


def _codecs() -> dict[str, numcodecs.abc.Codec]:
    return {
        "zstd-3": numcodecs.Zstd(level=3),
        "zstd-1": numcodecs.Zstd(level=1),
        "blosc-lz4-shuffle-5": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
        "blosc-lz4-bitshuffle-5": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
        "blosc-zstd-shuffle-3": numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE),
    }


def phantom(shape=(180, 460, 460), seed: int = 0) -> np.ndarray:
    """int16 HU: an elliptic body of soft tissue (40 HU), a liver (60 HU), noise, air outside."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (0.38 * shape[1])) ** 2 + ((x - cx) / (0.46 * shape[2])) ** 2 <= 1
    liver = ((y - cy * 0.9) / 90) ** 2 + ((x - cx * 0.7) / 110) ** 2 + ((z - shape[0] / 2) / 40) ** 2 <= 1
    img = np.where(body, 40.0, -1000.0) + np.where(liver & body, 20.0, 0.0)
    img = img + rng.normal(0, 12.0, size=shape)
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)


def encode(volume: np.ndarray, chunk: tuple[int, int, int], codec) -> dict[tuple[int, int, int], bytes]:
    out = {}
    grid = [range(0, s, c) for s, c in zip(volume.shape, chunk, strict=True)]
    for z, y, x in itertools.product(*grid):
        block = np.zeros(chunk, dtype=volume.dtype)
        part = volume[z : z + chunk[0], y : y + chunk[1], x : x + chunk[2]]
        block[: part.shape[0], : part.shape[1], : part.shape[2]] = part
        data = codec.encode(np.ascontiguousarray(block))
        out[(z // chunk[0], y // chunk[1], x // chunk[2])] = bytes(data) + crc32c.crc32c(data).to_bytes(
            4, "little"
        )
    return out


def read_patch(chunks, chunk, codec, start, size, dtype) -> np.ndarray:
    patch = np.empty(size, dtype=dtype)
    lo = [s // c for s, c in zip(start, chunk, strict=True)]
    hi = [(s + n - 1) // c for s, n, c in zip(start, size, chunk, strict=True)]
    for key in itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi, strict=True))):
        blob = chunks[key]
        body = memoryview(blob)[:-4]
        if crc32c.crc32c(body) != int.from_bytes(blob[-4:], "little"):
            raise ValueError(f"crc32c mismatch in chunk {key}")
        block = np.frombuffer(codec.decode(body), dtype=dtype).reshape(chunk)
        src, dst = [], []
        for a in range(3):
            c0 = key[a] * chunk[a]
            s0 = max(start[a], c0)
            s1 = min(start[a] + size[a], c0 + chunk[a])
            src.append(slice(s0 - c0, s1 - c0))
            dst.append(slice(s0 - start[a], s1 - start[a]))
        patch[tuple(dst)] = block[tuple(src)]
    return patch


def main(argv=None) -> None:
    # One thread, as in a data-loader worker: blosc would otherwise use its own thread pool.
    numcodecs.blosc.use_threads = False
    numcodecs.blosc.set_nthreads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=200)
    args = ap.parse_args(argv)
    vol = phantom()
    rng = np.random.default_rng(0)
    print(f"volume {vol.shape} int16, {vol.nbytes / 1e6:.0f} MB raw")
    print(
        "| chunk | codec | ratio | encode s | "
        + " | ".join(f"{'x'.join(map(str, p))} patches/s" for p in PATCHES)
        + " |"
    )
    print("|" + " --- |" * (4 + len(PATCHES)))
    for chunk in CHUNKS:
        for name, codec in _codecs().items():
            t = time.perf_counter()
            chunks = encode(vol, chunk, codec)
            enc = time.perf_counter() - t
            ratio = vol.nbytes / sum(len(b) for b in chunks.values())
            rates = []
            for size in PATCHES:
                starts = [
                    tuple(int(rng.integers(0, s - n + 1)) for s, n in zip(vol.shape, size, strict=True))
                    for _ in range(args.patches)
                ]
                t = time.perf_counter()
                for st in starts:
                    read_patch(chunks, chunk, codec, st, size, vol.dtype)
                rates.append(args.patches / (time.perf_counter() - t))
            cells = " | ".join(f"{r:.0f}" for r in rates)
            print(f"| {'x'.join(map(str, chunk))} | {name} | {ratio:.2f} | {enc:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()

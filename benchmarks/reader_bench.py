"""Reader benchmark (not part of CI): random training patches per second.

Run from the repository root with the main environment (it builds the data with the real writer):

    ~/.cache/hcc-shards/envs/main/bin/python benchmarks/reader_bench.py

In one run, on the same cases and the same patch boxes, it measures:

- ``ours``: hcc_shards.read (PatchStream, one thread, no read-ahead) from local disk;
- ``bound``: decompressing, from memory, exactly the chunks those patches touch (the codec's limit);
- ``blosc2``: nnU-Net-style blosc2 arrays (cache-sized blocks and chunks, zstd level 8), memory-mapped,
  opened per patch as nnU-Net does (in the benchmark-only env of benchmarks/setup_bench.sh);
- ``monai``: MONAI from .nii.gz (LoadImaged + RandCropByPosNegLabeld, bench env);
- ``emulator``: hcc_shards.read through gcp-storage-emulator (gs:// via gcsfs, on 127.0.0.1),
  one consuming thread (with the stream's background I/O thread fetching one patch ahead, and
  without: ``emulator_serial``) and with read-ahead threads;
- ``latency``: one consuming thread with a simulated storage wait per batch, fetch_ahead 0 / 1 / 2;
- ``workers``: a torch DataLoader over PatchDataset with 2 and 4 worker processes (reader env).

Volumes are full-size-like: ``--shape`` (default 90x512x512) int16 with smooth content (``--noise`` HU
of Gaussian noise on top, default 0) and uint8 labels. The writer's chunk shape and codec come from
``--chunk``, ``--shard``, ``--compressor`` and ``--level`` (default: BuildConfig's defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENVS = Path(os.environ.get("HCC_SHARDS_HOME", Path.home() / ".cache/hcc-shards")) / "envs"
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


# -- data ------------------------------------------------------------------------------------------


def synthetic_case(shape: tuple[int, int, int], seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like volume: body, low-frequency texture, liver, tumour, portal vein, aorta."""
    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    body = (yy / 0.75) ** 2 + (xx / 0.9) ** 2 < 1
    texture = np.zeros(shape, np.float32)
    for _ in range(6):
        k, ph = rng.uniform(1, 4, 3), rng.uniform(0, 2 * np.pi, 3)
        texture += rng.uniform(15, 40) * (
            np.cos(3 * k[0] * zz + ph[0]) * np.cos(3 * k[1] * yy + ph[1]) * np.cos(3 * k[2] * xx + ph[2])
        )
    label = np.zeros(shape, np.uint8)
    cz, cy, cx = rng.uniform(-0.1, 0.1, 3)
    label[((zz - cz) / 0.8) ** 2 + ((yy - cy) / 0.35) ** 2 + ((xx + 0.35 - cx) / 0.4) ** 2 < 1] = 1
    label[((zz - cz) / 0.25) ** 2 + ((yy - cy - 0.05) / 0.12) ** 2 + ((xx + 0.4 - cx) / 0.12) ** 2 < 1] = 2
    label[((yy - 0.05) / 0.04) ** 2 + ((xx + 0.05) / 0.04) ** 2 + (zz / 0.5) ** 2 < 1] = 3
    label[np.broadcast_to(((yy + 0.25) / 0.05) ** 2 + ((xx - 0.15) / 0.05) ** 2 < 1, shape)] = 4
    hu = np.where(body, 40.0 + texture, -1000.0)
    hu += np.select([label == 1, label == 2, label == 3, label == 4], [60.0, 30.0, 150.0, 200.0], 0.0)
    if noise:
        hu += rng.normal(0, noise, shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), label


def build_dataset(workdir: Path, args: argparse.Namespace) -> tuple[str, list[str]]:
    """Write the cases with hcc_shards.shards (once per configuration); returns (url, case ids)."""
    from hcc_shards.case import Case, Provenance
    from hcc_shards.config import BuildConfig
    from hcc_shards.geometry import Geometry
    from hcc_shards.shards import commit_dataset, version_url, write_case

    config = BuildConfig(
        chunk_shape=args.chunk,
        shard_shape=args.shard,
        compressor=args.compressor,
        compression_level=args.level,
        image_shuffle=args.shuffle,
    )
    url = str(
        workdir
        / f"ds-{config.config_hash()}-n{args.cases}-{'x'.join(map(str, args.shape))}-noise{args.noise:g}"
    )
    ids_file = Path(url) / "case_ids.json"
    if ids_file.exists():
        return url, json.loads(ids_file.read_text())
    rows = []
    for i in range(args.cases):
        image, label = synthetic_case(args.shape, seed=i, noise=args.noise)
        geometry = Geometry.from_components(
            shape=args.shape, spacing_zyx=(2.5, 0.75, 0.75), origin_lps=(0, 0, 0)
        )
        prov = Provenance(
            f"BENCH_{i:03d}", f"1.2.9.{i}", f"1.2.9.{i}.1", None, f"1.2.9.{i}.2", f"1.2.9.{i}.3"
        )
        case = Case(image=image, label=label, geometry=geometry, provenance=prov)
        rows.append(write_case(case, version_url(url, config), config, split="train"))
        print(f"  wrote case {i + 1}/{args.cases}", file=sys.stderr)
    commit_dataset(url, rows, [], config, {"name": "reader benchmark"})
    ids = [r.case_id for r in rows]
    ids_file.write_text(json.dumps(ids))
    return url, ids


# -- measurements ------------------------------------------------------------------------------------


def make_specs(url: str, size: tuple[int, int, int], n: int, seed: int) -> list:
    from hcc_shards.read import RandomPatches, open_dataset

    ds = open_dataset(url)
    sampler = RandomPatches(size, samples_per_epoch=n, foreground_probability=1 / 3)
    return [sampler.spec(ds, seed, 0, p) for p in range(n)]


def rate_ours(
    url: str, specs: list, *, threads: int = 0, prefetch: int = 0, storage_options=None, io=None
) -> float:
    """Patches/s of PatchStream over exactly ``specs`` (a fresh Dataset: shard indexes load on the way)."""
    from hcc_shards.read import PatchStream, open_dataset

    ds = open_dataset(url, storage_options, io_settings=io)
    stream = PatchStream(ds, _FixedSpecs(specs), threads=threads, prefetch=prefetch)
    t0 = time.perf_counter()
    count = sum(1 for _ in stream)
    dt = time.perf_counter() - t0
    stream.close()
    assert count == len(specs)
    return count / dt


BLOCK = 10
"""Patches per timed block (see :func:`interleaved`)."""


def interleaved(contenders: dict, n_blocks: int, repeat: int) -> dict[str, float]:
    """Patches/s of each contender, robust to a shared machine.

    Each contender reads block ``i`` (``BLOCK`` patches) in turn, for every block, ``repeat`` times;
    a contender's time is the sum over blocks of its fastest run of that block, so a burst of load
    from another process spoils one block of one run, not the result.
    """
    best = {name: [float("inf")] * n_blocks for name in contenders}
    for _ in range(repeat):
        for i in range(n_blocks):
            for name, run in contenders.items():
                t0 = time.perf_counter()
                run(i)
                best[name][i] = min(best[name][i], time.perf_counter() - t0)
    return {name: n_blocks * BLOCK / sum(times) for name, times in best.items()}


def ours_blocks(url: str, specs: list, storage_options=None, io=None, fetch_ahead: int = 1):
    """Read block ``i`` of ``specs`` with PatchStream (one thread, no read-ahead) on one Dataset.

    On object stores the stream's background I/O thread fetches the next patch's bytes while this
    thread decodes (``fetch_ahead``); local files are read on demand whatever it says."""
    from hcc_shards.read import PatchStream, open_dataset

    ds = open_dataset(url, storage_options, io_settings=io)

    def run(i: int) -> None:
        block = _FixedSpecs(specs[i * BLOCK : (i + 1) * BLOCK])
        stream = PatchStream(ds, block, threads=0, prefetch=0, fetch_ahead=fetch_ahead)
        for _ in stream:
            pass

    return run


def bound_blocks(jobs: list, *, assemble: bool):
    def run(i: int) -> None:
        rate_bound(jobs[i * BLOCK : (i + 1) * BLOCK], assemble=assemble)

    return run


class _FixedSpecs:
    """A sampler that replays given specs, so every contender reads the same boxes."""

    finite = True

    def __init__(self, specs: list) -> None:
        self.specs = specs

    def epoch_length(self, dataset) -> int:
        return len(self.specs)

    def spec(self, dataset, seed, epoch, position):
        return self.specs[position]

    def settings(self) -> dict:
        return {"kind": "fixed", "n": len(self.specs)}


def tensorstore_blocks(url: str, specs: list):
    """The same boxes read with TensorStore (C++; zarr3 driver, local files), one thread, no cache.

    Boxes are clipped to the volume (TensorStore does not pad), so at the borders it reads fewer
    voxels than the others; None when tensorstore is not installed."""
    try:
        import tensorstore as ts
    except ImportError:
        return None
    from hcc_shards.read import open_dataset

    ds = open_dataset(url)
    ctx = ts.Context(
        {
            "data_copy_concurrency": {"limit": 1},
            "file_io_concurrency": {"limit": 1},
            "cache_pool": {"total_bytes_limit": 0},
        }
    )
    opened: dict[tuple[str, str], object] = {}

    def array(case_id: str, which: str):
        if (case_id, which) not in opened:
            lazy = getattr(ds.case(case_id), which)
            spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": ds.store.path(lazy.rel)}}
            opened[(case_id, which)] = ts.open(spec, context=ctx, open=True).result()
        return opened[(case_id, which)]

    def read(spec) -> None:
        for which in ("image", "label"):
            arr = array(spec.case_id, which)
            lo = [max(0, int(a)) for a in spec.start]
            hi = [min(n, int(b)) for b, n in zip(spec.stop, arr.shape, strict=True)]
            arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].read().result()

    def run(i: int) -> None:
        for spec in specs[i * BLOCK : (i + 1) * BLOCK]:
            read(spec)

    return run


def touched_chunks(url: str, specs: list) -> list[list[tuple]]:
    """Per patch, (array metadata, compressed bytes without the crc) of every chunk it touches."""
    from hcc_shards.read import RegionRequest, open_dataset
    from hcc_shards.read.array import ChunkRead, plan_reads

    ds = open_dataset(url)
    jobs = []
    for spec in specs:
        case = ds.case(spec.case_id)
        reqs = [
            RegionRequest(case.image, spec.start, spec.stop),
            RegionRequest(case.label, spec.start, spec.stop),
        ]
        reads = [r for r in plan_reads(reqs) if isinstance(r, ChunkRead)]
        blobs = ds.store.read_ranges([(r.rel, r.start, r.end) for r in reads])
        shapes = [tuple(b - a for a, b in zip(spec.start, spec.stop, strict=True))] * 2
        dtypes = [case.image.dtype, case.label.dtype]
        chunks = [
            (reqs[r.request].array.meta, bytes(b)[:-4], r.request, r.src, r.dst)
            for r, b in zip(reads, blobs, strict=True)
        ]
        jobs.append((shapes, dtypes, chunks))
    return jobs


def rate_bound(jobs: list, *, assemble: bool = False) -> tuple[float, float]:
    """(patches/s, GB/s) decompressing only the touched chunks, their bytes already in memory.

    With ``assemble``, also copy each chunk's part into freshly allocated patch arrays: the least
    work any reader of this layout does (no I/O, no checksums, no planning).
    """
    import zstandard
    from numcodecs import blosc

    blosc.use_threads = False
    dctx = zstandard.ZstdDecompressor()
    t0 = time.perf_counter()
    nbytes = 0
    for shapes, dtypes, chunks in jobs:
        outs = [np.empty(s, d) for s, d in zip(shapes, dtypes, strict=True)] if assemble else None
        for meta, blob, request, src, dst in chunks:
            if meta.compressor == "zstd":
                out = dctx.decompress(blob, max_output_size=meta.chunk_nbytes)
            else:
                out = blosc.decompress(blob)
            nbytes += len(out)
            if outs is not None:
                outs[request][dst] = np.frombuffer(out, meta.dtype).reshape(meta.chunk_shape)[src]
    dt = time.perf_counter() - t0
    return len(jobs) / dt, nbytes / dt / 1e9


def rate_blosc2(url: str, ids: list[str], specs_by_size: dict, workdir: Path, repeat: int) -> dict:
    """Run the blosc2 baseline in the benchmark env (benchmarks/setup_bench.sh); patches/s per size."""
    job = {
        "ids": ids,
        "repeat": repeat,
        "specs": {k: [[s.case_id, list(s.start), list(s.size)] for s in v] for k, v in specs_by_size.items()},
    }
    return _in_bench_env(
        "blosc2", url, workdir / f"blosc2-{Path(url).name}", ("image.npy", "image.b2nd"), job
    )


def _in_bench_env(kind: str, url: str, folder: Path, made: tuple[str, ...], job: dict) -> dict:
    """This script's ``_<kind>`` child, run in the benchmark env on ``job``; its JSON result.

    Each case of ``job["ids"]`` is first saved to ``folder`` as ``<id>_image.npy`` and
    ``<id>_label.npy``, unless one of ``<id>_<made>`` is there (the child's files from a run before).
    """
    from hcc_shards.read import open_dataset

    py = subprocess.run(
        ["bash", str(ROOT / "benchmarks/setup_bench.sh")], check=True, capture_output=True, text=True
    )
    bench_python = py.stdout.strip().splitlines()[-1]
    folder.mkdir(exist_ok=True)
    ds = open_dataset(url)
    for cid in job["ids"]:
        if not any((folder / f"{cid}_{m}").exists() for m in made):
            case = ds.case(cid)
            np.save(folder / f"{cid}_image.npy", case.image[...])
            np.save(folder / f"{cid}_label.npy", case.label[...])
    job_file = folder / "job.json"
    job_file.write_text(json.dumps({"dir": str(folder), **job}))
    done = subprocess.run(
        [bench_python, __file__, f"_{kind}", str(job_file)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def blosc2_child(job_file: str) -> None:
    """(bench env) convert to nnU-Net-style blosc2 files once, then time patch reads."""
    import blosc2

    job = json.loads(Path(job_file).read_text())
    d = Path(job["dir"])
    blosc2.set_nthreads(1)
    for cid in job["ids"]:
        for kind in ("image", "label"):
            b2 = d / f"{cid}_{kind}.b2nd"
            if b2.exists():
                continue
            data = np.load(d / f"{cid}_{kind}.npy")
            blocks, chunks = cache_sized_blocks(data.shape, (128, 128, 128), data.dtype.itemsize)
            blosc2.asarray(
                data,
                urlpath=str(b2),
                chunks=chunks,
                blocks=blocks,
                cparams={"codec": blosc2.Codec.ZSTD, "clevel": 8, "nthreads": 1},
                mmap_mode="w+",
            )
            os.unlink(d / f"{cid}_{kind}.npy")
    out = {}
    dparams = {"nthreads": 1}
    for key, specs in job["specs"].items():

        def run(i: int, specs=specs) -> None:
            for cid, start, size in specs[i * BLOCK : (i + 1) * BLOCK]:
                # nnU-Net opens a case's files each time it loads a sample from it.
                image = blosc2.open(str(d / f"{cid}_image.b2nd"), mode="r", mmap_mode="r", dparams=dparams)
                label = blosc2.open(str(d / f"{cid}_label.b2nd"), mode="r", mmap_mode="r", dparams=dparams)
                _padded_crop(image, start, size, -1024)
                _padded_crop(label, start, size, 0)

        out[key] = interleaved({"blosc2": run}, len(specs) // BLOCK, job["repeat"])["blosc2"]
    print(json.dumps(out))


def rate_monai(url: str, ids: list[str], sizes: list, workdir: Path, n: int) -> dict:
    """MONAI from .nii.gz with RandCropByPosNegLabeld, in the bench env; patches/s per size."""
    job = {"ids": ids, "n": n, "sizes": [list(s) for s in sizes]}
    return _in_bench_env("monai", url, workdir / f"nifti-{Path(url).name}", ("image.nii.gz",), job)


def monai_child(job_file: str) -> None:
    """(bench env) write the cases as .nii.gz once, then time MONAI's usual training input path:
    LoadImaged + EnsureChannelFirstd + SpatialPadd (to the patch size) + RandCropByPosNegLabeld
    (pos 1 : neg 2, a third on foreground like ours, one sample per load),
    the whole volume loaded per sample as a MONAI Dataset without caching does."""
    import nibabel as nib
    import torch
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        RandCropByPosNegLabeld,
        SpatialPadd,
    )

    torch.set_num_threads(1)
    job = json.loads(Path(job_file).read_text())
    d = Path(job["dir"])
    for cid in job["ids"]:
        for kind in ("image", "label"):
            gz = d / f"{cid}_{kind}.nii.gz"
            if gz.exists():
                continue
            data = np.load(d / f"{cid}_{kind}.npy")
            tmp = d / f"{cid}_{kind}.tmp.nii.gz"
            nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp))
            os.replace(tmp, gz)
            os.unlink(d / f"{cid}_{kind}.npy")
    items = [
        {"image": str(d / f"{c}_image.nii.gz"), "label": str(d / f"{c}_label.nii.gz")} for c in job["ids"]
    ]
    out = {}
    for size in job["sizes"]:
        tf = Compose(
            [
                LoadImaged(keys=["image", "label"], image_only=True),
                EnsureChannelFirstd(keys=["image", "label"]),
                # Volumes thinner than the patch (90 slices vs 128) are padded first, as in MONAI's recipes.
                SpatialPadd(keys=["image"], spatial_size=size, value=-1024),
                SpatialPadd(keys=["label"], spatial_size=size, value=0),
                RandCropByPosNegLabeld(
                    keys=["image", "label"], label_key="label", spatial_size=size, pos=1, neg=2, num_samples=1
                ),
            ]
        )
        tf.set_random_state(seed=1)
        tf(items[0])  # warm-up (imports, page cache)
        t0 = time.perf_counter()
        for i in range(job["n"]):
            patch = tf(items[i % len(items)])[0]
            assert tuple(patch["image"].shape[1:]) == tuple(size)
        out["x".join(map(str, size))] = job["n"] / (time.perf_counter() - t0)
    print(json.dumps(out))


def cache_sized_blocks(shape, patch, itemsize, l1=32768, l3=1441792, safety=0.8):
    """nnU-Net's idea for blosc2 layouts: blocks that fit the L1 cache, chunks that fit L3 and stay
    under 1.5x the patch. Axes are halved (blocks) or grown by one block (chunks) in turn."""
    block = [min(n, 1 << max(0, int(np.ceil(np.log2(p))))) for n, p in zip(shape, patch, strict=True)]
    while np.prod(block) * itemsize > l1 * safety and max(block) > 1:
        big = int(np.argmax(np.asarray(block) / np.asarray(patch)))
        block[big] = max(1, block[big] // 2)
    chunk = list(block)
    while np.prod(chunk) * itemsize < l3 * safety and chunk != list(shape):
        grown = False
        for a in np.argsort(np.asarray(chunk) / np.asarray(block)):
            if chunk[a] < shape[a] and (chunk[a] + block[a]) <= 1.5 * patch[a]:
                chunk[a] = min(shape[a], chunk[a] + block[a])
                grown = True
                break
        if not grown:
            break
    return tuple(block), tuple(chunk)


def _padded_crop(arr, start, size, pad) -> np.ndarray:
    lo = [max(0, s) for s in start]
    hi = [min(n, s + k) for n, s, k in zip(arr.shape, start, size, strict=True)]
    data = arr[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    before = [a - s for a, s in zip(lo, start, strict=True)]
    after = [k - b - (h - a) for k, b, a, h in zip(size, before, lo, hi, strict=True)]
    return np.pad(data, list(zip(before, after, strict=True)), constant_values=pad)


def rate_emulator(url: str, specs_by_size: dict, workdir: Path, repeat: int) -> dict:
    """Upload the dataset to gcp-storage-emulator, then read the same patches through gs://."""
    import fsspec

    sys.path.insert(0, str(ROOT / "tests"))
    from emulators import gcs_emulator

    from hcc_shards.read import IOSettings

    out = {}
    with gcs_emulator(Path(tempfile.mkdtemp(dir=workdir))) as gcs:
        bucket = gcs.make_bucket("bench")
        fs = fsspec.filesystem("gs", **gcs.storage_options)
        t0 = time.perf_counter()
        fs.put(url + "/", f"{bucket}/ds", recursive=True, batch_size=4)
        print(f"  uploaded to the emulator in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        # The emulator answers one connection at a time (listen backlog 5): few requests in flight,
        # and merge ranges generously since each request costs ~2 ms.
        io = IOSettings(max_concurrency=4, coalesce_gap=1 << 20, max_batches_in_flight=1)
        remote, opts = f"{bucket}/ds", gcs.storage_options
        for key, specs in specs_by_size.items():
            # One consuming thread: PatchStream(threads=0) decodes in it while its background I/O
            # thread fetches the next patch (fetch_ahead=1, the default); "serial" fetches on demand.
            both = interleaved(
                {
                    "e": ours_blocks(remote, specs, opts, io),
                    "serial": ours_blocks(remote, specs, opts, io, fetch_ahead=0),
                    # Local disk again, in the same blocks: the emulator/ours ratio compares like with like.
                    "local": ours_blocks(url, specs),
                },
                len(specs) // BLOCK,
                repeat,
            )
            one = both["e"]
            two = max(
                rate_ours(remote, specs, threads=2, prefetch=4, storage_options=opts, io=io)
                for _ in range(repeat)
            )
            out[key] = {"one_thread": one, "serial": both["serial"], "local": both["local"], "threads2": two}
    return out


def rate_latency(url: str, specs: list, waits_ms: tuple, repeat: int) -> dict:
    """Patches/s of one consuming thread when every storage batch first waits ``waits_ms`` (an object
    store's network wait, simulated on fsspec's in-memory filesystem), with fetch_ahead 0, 1 and 2."""
    import fsspec

    from hcc_shards.read import PatchStream, open_dataset
    from hcc_shards.read.io import ByteStore

    fs = fsspec.filesystem("memory")
    root = f"/reader-bench-{os.getpid()}"
    fs.put(url + "/", root, recursive=True)
    original = ByteStore._remote_ranges
    out = {}
    try:
        for wait in waits_ms:

            def slow(self, ranges, wait=wait):
                time.sleep(wait / 1000)
                return original(self, ranges)

            ByteStore._remote_ranges = slow  # type: ignore[method-assign]
            ds = open_dataset(f"memory://{root}")

            def blocks(fa: int, ds=ds):
                def run(i: int) -> None:
                    block = _FixedSpecs(specs[i * BLOCK : (i + 1) * BLOCK])
                    for _ in PatchStream(ds, block, threads=0, prefetch=0, fetch_ahead=fa):
                        pass

                return run

            runs = {f"fetch_ahead={fa}": blocks(fa) for fa in (0, 1, 2)}
            out[wait] = interleaved(runs, len(specs) // BLOCK, repeat)
    finally:
        ByteStore._remote_ranges = original  # type: ignore[method-assign]
        fs.rm(root, recursive=True)
    return out


def rate_workers(url: str, size: tuple[int, int, int], n: int, workers: int) -> float:
    """Patches/s of a torch DataLoader with ``workers`` processes (run in the reader env)."""
    py = ENVS / "reader/bin/python"
    cmd = [str(py), __file__, "_workers", url, ",".join(map(str, size)), str(n), str(workers)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def workers_child(url: str, size: str, n: str, workers: str) -> None:
    """(reader env) time a DataLoader over random patches; the first batch per worker is warm-up."""
    from hcc_shards.read import PatchStream, RandomPatches, open_dataset
    from hcc_shards.read.torch import PatchDataset, ResumableLoader

    patch = tuple(int(v) for v in size.split(","))
    stream = PatchStream(
        open_dataset(url), RandomPatches(patch, samples_per_epoch=int(n)), threads=1, prefetch=2
    )
    k = int(workers)
    loader = ResumableLoader(
        PatchDataset(stream), batch_size=2, num_workers=k, persistent_workers=True, prefetch_factor=2
    )
    count, t0 = 0, None
    for i, batch in enumerate(loader):
        if i == k:
            t0, count = time.perf_counter(), 0
        count += len(batch["position"])
    print(count / (time.perf_counter() - t0))


# -- driver ---------------------------------------------------------------------------------------------


def _triple(text: str) -> tuple[int, int, int]:
    parts = tuple(int(v) for v in text.replace("x", ",").split(","))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected z,y,x, got {text!r}")
    return parts  # type: ignore[return-value]


def main() -> None:
    from hcc_shards.config import BuildConfig

    d = BuildConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hcc-shards-bench")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--shape", type=_triple, default=(90, 512, 512))
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--chunk", type=_triple, default=d.chunk_shape)
    p.add_argument("--shard", type=_triple, default=d.shard_shape)
    p.add_argument("--compressor", choices=["zstd", "blosc"], default=d.compressor)
    p.add_argument("--level", type=int, default=d.compression_level)
    p.add_argument(
        "--shuffle",
        choices=["shuffle", "bitshuffle"],
        default=d.image_shuffle,
        help="blosc filter of the image",
    )
    p.add_argument("--patches", type=int, default=150)
    p.add_argument("--repeat", type=int, default=3, help="rounds per measurement; the best is kept")
    p.add_argument(
        "--sizes",
        type=lambda s: [_triple(v) for v in s.split(";")],
        default=[(90, 128, 128), (128, 128, 128), (96, 160, 160)],
    )
    p.add_argument("--monai-patches", type=int, default=10, help="MONAI samples per size (about 1/s)")
    p.add_argument(
        "--skip", default="", help="comma list of: tensorstore, blosc2, monai, emulator, latency, workers"
    )
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    args.workdir.mkdir(parents=True, exist_ok=True)

    url, ids = build_dataset(args.workdir, args)
    specs = {"x".join(map(str, s)): make_specs(url, s, args.patches, seed=1) for s in args.sizes}
    rows = {}
    for key, sp in specs.items():
        rate_ours(url, sp[:10])  # warm the page cache
        jobs = touched_chunks(url, sp)
        contenders = {
            "ours": ours_blocks(url, sp),
            "bound": bound_blocks(jobs, assemble=False),
            "bound+copy": bound_blocks(jobs, assemble=True),
        }
        cpp = tensorstore_blocks(url, sp) if "tensorstore" not in skip else None
        if cpp is not None:
            contenders["tensorstore"] = cpp
        rates = interleaved(contenders, len(sp) // BLOCK, args.repeat)
        raw = sum(m.chunk_nbytes for _, _, chunks in jobs for m, *_ in chunks) / len(jobs)
        rows[key] = {**rates, "bound_GBps": rates["bound"] * raw / 1e9, "ours_cold": rate_ours(url, sp)}
        print(f"  {key}: {rows[key]}", file=sys.stderr)
    if "blosc2" not in skip:
        for key, r in rate_blosc2(url, ids, specs, args.workdir, args.repeat).items():
            rows[key]["blosc2"] = r
    if "monai" not in skip:
        for key, r in rate_monai(url, ids, args.sizes, args.workdir, args.monai_patches).items():
            rows[key]["monai"] = r
    if "emulator" not in skip:
        for key, r in rate_emulator(url, specs, args.workdir, args.repeat).items():
            rows[key]["emulator"] = r["one_thread"]
            rows[key]["emulator_serial"] = r["serial"]
            rows[key]["ours_local_e"] = r["local"]
            rows[key]["emulator_threads2"] = r["threads2"]
    latency = {}
    if "latency" not in skip:
        key = next(iter(specs))
        latency = {"patch": key, **rate_latency(url, specs[key][:60], (5, 20), args.repeat)}
    if "workers" not in skip:
        for key, s in zip(specs, args.sizes, strict=True):
            for k in (2, 4):
                rows[key][f"workers{k}"] = rate_workers(url, s, max(args.patches, 40 * k), k)
    report(args, rows)
    if latency:
        print(
            f"\none consuming thread, simulated storage wait per batch, {latency.pop('patch')} patches/s:\n"
        )
        print("| wait per batch | fetch_ahead=0 | fetch_ahead=1 | fetch_ahead=2 |\n|---|---|---|---|")
        for wait, r in latency.items():
            print(f"| {wait} ms | " + " | ".join(f"{v:.1f}" for v in r.values()) + " |")


def report(args: argparse.Namespace, rows: dict) -> None:
    print(
        f"\ncases: {args.cases} x {'x'.join(map(str, args.shape))} int16+uint8, noise {args.noise:g} HU; "
        f"chunk {args.chunk}, shard {args.shard}, {args.compressor} level {args.level} {args.shuffle}; "
        f"{args.patches} patches per measurement; per block of {BLOCK} patches the best of {args.repeat} runs\n"
    )
    cols = [
        "ours",
        "ours_cold",
        "bound",
        "bound+copy",
        "tensorstore",
        "blosc2",
        "monai",
        "ours_local_e",
        "emulator",
        "emulator_serial",
        "emulator_threads2",
        "workers2",
        "workers4",
    ]
    print(
        "| patch | "
        + " | ".join(f"{c} /s" for c in cols)
        + " | ours/bound | ours/(bound+copy) | tensorstore/bound | ours/blosc2 | emulator/ours_e"
        + " | emulator_threads2/ours_e |"
    )
    print("|---" * (len(cols) + 7) + "|")
    for key, r in rows.items():
        cells = [f"{r[c]:.1f}" if c in r else "-" for c in cols]
        ratios = [
            f"{r['ours'] / r['bound']:.2f}",
            f"{r['ours'] / r['bound+copy']:.2f}",
            f"{r['tensorstore'] / r['bound']:.2f}" if "tensorstore" in r else "-",
            f"{r['ours'] / r['blosc2']:.2f}" if "blosc2" in r else "-",
            f"{r['emulator'] / r['ours_local_e']:.2f}" if "emulator" in r else "-",
            f"{r['emulator_threads2'] / r['ours_local_e']:.2f}" if "emulator" in r else "-",
        ]
        print(f"| {key} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    # This checkout's package, whatever the environment has installed.
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) > 1 and sys.argv[1] == "_blosc2":
        blosc2_child(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "_monai":
        monai_child(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "_workers":
        workers_child(*sys.argv[2:6])
    else:
        main()

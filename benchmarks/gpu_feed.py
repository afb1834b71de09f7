"""Does the reader keep a GPU busy? Train an nnU-Net-shaped 3D U-Net on patches streamed from a built
dataset and measure the fraction of step time spent waiting for data.

Setup as nnU-Net trains on one GPU: bf16 autocast, 128^3 patches, batch 4, SGD with Nesterov momentum,
cross-entropy + Dice, a third of the patches forced onto foreground. In the same run the baseline is
the same loop fed from one batch already on the GPU (the compute-only step time), so the report is a
ratio measured on one machine.

    python benchmarks/gpu_feed.py DATASET_URL --workers 4 --steps 60

Prints one JSON line with the numbers and a short table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unet3d import UNet3D, dice_ce_loss

from hcc_shards.read import PatchStream, RandomPatches, open_dataset
from hcc_shards.read.torch import PatchDataset, ResumableLoader


def _normalise(image: torch.Tensor) -> torch.Tensor:
    # CT normalisation as nnU-Net does for CT: clip to a foreground HU window, then z-score.
    x = image.float().clamp_(-100.0, 250.0)
    return (x - 75.0) / 90.0


def _train_step(model, opt, image, label) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(image)
        loss = dice_ce_loss(logits, label)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def compute_only(model, opt, batch_size: int, patch: tuple[int, int, int], steps: int) -> list[float]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    image = torch.randn((batch_size, 1, *patch), device="cuda", generator=gen)
    label = torch.randint(0, 5, (batch_size, *patch), device="cuda", generator=gen)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        _train_step(model, opt, image, label)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def fed(model, opt, loader, steps: int, warmup: int) -> tuple[list[float], list[float]]:
    waits, totals = [], []
    it = iter(loader)
    for i in range(steps + warmup):
        t0 = time.perf_counter()
        batch = next(it)
        image = _normalise(batch["image"].to("cuda", non_blocking=True)).unsqueeze(1)
        label = batch["label"].to("cuda", non_blocking=True).long()
        t1 = time.perf_counter()
        _train_step(model, opt, image, label)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= warmup:
            waits.append(t1 - t0)
            totals.append(t2 - t0)
    return waits, totals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, nargs=3, default=(128, 128, 128))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=4, help="reader threads per worker")
    args = ap.parse_args()
    patch = tuple(args.patch)

    torch.backends.cudnn.benchmark = True
    model = UNet3D().cuda().to(memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)

    base = compute_only(model, opt, args.batch, patch, args.warmup + args.steps)[args.warmup :]

    ds = open_dataset(args.dataset)
    stream = PatchStream(
        ds,
        RandomPatches(patch, samples_per_epoch=100_000, foreground_probability=1 / 3),
        seed=0,
        threads=args.threads,
    )
    loader = ResumableLoader(
        PatchDataset(stream),
        batch_size=args.batch,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=True,
        prefetch_factor=4 if args.workers > 0 else None,
    )
    waits, totals = fed(model, opt, loader, args.steps, args.warmup)

    step_compute = statistics.median(base)
    step_fed = statistics.median(totals)
    wait_fraction = sum(waits) / sum(totals)
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "workers": args.workers,
        "batch": args.batch,
        "patch": list(patch),
        "cases": len(ds),
        "steps": args.steps,
        "compute_only_step_s": round(step_compute, 4),
        "fed_step_s": round(step_fed, 4),
        "patches_per_s_compute_only": round(args.batch / step_compute, 2),
        "patches_per_s_fed": round(args.batch * len(totals) / sum(totals), 2),
        "data_wait_fraction": round(wait_fraction, 4),
        "fed_over_compute_only": round(step_fed / step_compute, 3),
    }
    print(json.dumps(result))
    print(f"{'metric':<32}{'value':>12}")
    for k in (
        "compute_only_step_s",
        "fed_step_s",
        "patches_per_s_compute_only",
        "patches_per_s_fed",
        "data_wait_fraction",
        "fed_over_compute_only",
    ):
        print(f"{k:<32}{result[k]:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

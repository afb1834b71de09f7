"""MONAI adapter: patches as MONAI dictionaries of ``MetaTensor`` with their RAS affine.

Imports monai and torch only when a function is called, so the module can be imported without
them. MONAI's convention is channel first, spatial axes (x, y, z) and an affine from index
(i, j, k) to RAS (``LoadImage``'s default): the reader's (z, y, x) LPS patches are transposed and
their affine converted (:func:`hcc_shards.geometry.ras_xyz_affine`), so ``Spacingd``,
``Orientationd`` and every other spatial transform see the true world geometry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hcc_shards.geometry import lps_zyx_affine, ras_xyz_affine

IMAGE_KEYS = ("image", "label")
"""The array entries converted to MetaTensors."""


def to_monai(item: dict[str, Any]) -> dict[str, Any]:
    """A reader sample dict (``Patch.as_dict()`` or a :class:`PatchDataset` item) as a MONAI dict.

    ``image`` and ``label`` become ``MetaTensor`` of shape (1, x, y, z) (float32 and uint8) whose
    ``affine`` is the RAS (x, y, z) affine of the patch; the other entries are kept.
    """
    import torch
    from monai.data import MetaTensor

    affine = ras_xyz_affine(np.asarray(item["affine"], dtype=np.float64))
    out = dict(item)
    for key, dtype in zip(IMAGE_KEYS, (torch.float32, torch.uint8), strict=True):
        arr = torch.as_tensor(np.asarray(item[key])).permute(2, 1, 0)[None].to(dtype).contiguous()
        out[key] = MetaTensor(
            arr, affine=torch.as_tensor(affine), meta={"space": "RAS", "case_id": item["case_id"]}
        )
    out["affine"] = torch.tensor(np.asarray(item["affine"]), dtype=torch.float64)
    return out


def lps_zyx(tensor: Any) -> tuple[Any, np.ndarray]:
    """A (C, x, y, z) MetaTensor back to the reader's convention: (C, z, y, x) and its LPS affine."""
    affine = lps_zyx_affine(np.asarray(tensor.affine, dtype=np.float64))
    return tensor.as_tensor().permute(0, 3, 2, 1), affine


def monai_dataset(stream: Any, transform: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """A :class:`hcc_shards.read.torch.PatchDataset` whose items are MONAI dicts (:func:`to_monai`),
    then mapped by ``transform`` (e.g. a ``monai.transforms.Compose`` of dictionary transforms).

    Use it with :class:`hcc_shards.read.torch.ResumableLoader` or ``monai.data.DataLoader``;
    ``collate_fn=monai.data.list_data_collate`` keeps the MetaTensors' metadata. The transform must
    keep ``position``.
    """
    from hcc_shards.read.torch import PatchDataset

    return PatchDataset(stream, transform=_Then(transform))


class _Then:
    """Picklable ``transform(to_monai(item))`` (DataLoader workers may be spawned)."""

    def __init__(self, transform: Callable[[dict[str, Any]], Any] | None) -> None:
        self.transform = transform

    def __call__(self, item: dict[str, Any]) -> Any:
        out = to_monai(item)
        return out if self.transform is None else self.transform(out)

"""TorchIO adapter: patches as ``tio.Subject`` (ScalarImage + LabelMap with their RAS affine).

Imports torchio only when a function is called. TorchIO images are (C, W, H, D) tensors, spatial
index (i, j, k) along x, y, z, with a 4x4 affine to RAS: the reader's (z, y, x) LPS patches are
transposed and their affine converted (:func:`hcc_shards.geometry.ras_xyz_affine`), so
``RandomAffine``, ``Resample``, ``ToCanonical`` and the other spatial transforms act in world space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hcc_shards.geometry import lps_zyx_affine, ras_xyz_affine


def to_subject(item: dict[str, Any]) -> Any:
    """A reader sample dict (``Patch.as_dict()`` or a PatchDataset item) as a ``tio.Subject``.

    ``image`` is a ``ScalarImage`` (float32), ``label`` a ``LabelMap`` (uint8), both (1, x, y, z)
    with the patch's RAS affine; ``case_id``, ``position``, ``start`` and ``padding`` are kept as
    subject entries.
    """
    import torch
    import torchio as tio

    affine = ras_xyz_affine(np.asarray(item["affine"], dtype=np.float64))

    def xyz(a: Any, dtype: Any) -> Any:
        return torch.as_tensor(np.asarray(a)).permute(2, 1, 0)[None].to(dtype).contiguous()

    extra = {k: item[k] for k in ("case_id", "position", "start", "padding") if k in item}
    return tio.Subject(
        image=tio.ScalarImage(tensor=xyz(item["image"], torch.float32), affine=affine),
        label=tio.LabelMap(tensor=xyz(item["label"], torch.uint8), affine=affine),
        **extra,
    )


def from_subject(subject: Any) -> dict[str, Any]:
    """A (transformed) subject back as a reader dict: ``image``/``label`` (z, y, x) tensors, LPS ``affine``."""
    import torch

    out = {k: v for k, v in subject.items() if k not in ("image", "label")}
    image, label = subject["image"], subject["label"]
    out["image"] = image.data[0].permute(2, 1, 0).contiguous()
    out["label"] = label.data[0].permute(2, 1, 0).contiguous()
    out["affine"] = torch.as_tensor(lps_zyx_affine(image.affine))
    return out


class SubjectTransform:
    """A PatchDataset ``transform``: item -> Subject -> ``transform`` -> item (:func:`from_subject`).

    ``PatchDataset(stream, transform=SubjectTransform(tio.RandomAffine()))``; picklable for workers.
    """

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        return from_subject(self.transform(to_subject(item)))

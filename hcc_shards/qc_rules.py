"""Quality-control rules: findings that keep a case but flag it (the manifest's ``qc_flags``).

Each rule is a function of the label voxel counts of one annotation (label name -> voxels):

- ``tumor_gt_1.5x_liver``: more tumour voxels than 1.5 x the liver voxels, when both labels are
  annotated (HCC_065 and HCC_075 of the real collection). A liver without voxels and a tumour with
  some raise the flag (the ratio is unbounded), as the build has always flagged such cases; no
  tumour voxels and no liver voxels raise nothing.
- ``missing_<label name>``: a label the annotation defines has no voxel.

numpy-free, so the decoder, the shard writer and the synthetic cohort's truth share it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from hcc_shards.labels import LABEL_BY_VALUE, LIVER, TUMOR

__all__ = [
    "MISSING_PREFIX",
    "TUMOR_GT_LIVER",
    "TUMOR_LIVER_RATIO",
    "is_rule_flag",
    "missing_flag",
    "qc_flags",
    "tumor_gt_liver",
]

TUMOR_LIVER_RATIO = 1.5
"""Tumour voxels beyond this many times the liver voxels raise :data:`TUMOR_GT_LIVER`."""
TUMOR_GT_LIVER = "tumor_gt_1.5x_liver"
"""Flag: more tumour voxels than :data:`TUMOR_LIVER_RATIO` x the liver voxels."""
MISSING_PREFIX = "missing_"
"""Flag prefix: the annotated label named after it has no voxel."""

_TUMOR = LABEL_BY_VALUE[TUMOR].name
_LIVER = LABEL_BY_VALUE[LIVER].name


def tumor_gt_liver(tumor: int, liver: int) -> bool:
    """Whether ``tumor`` voxels exceed :data:`TUMOR_LIVER_RATIO` x ``liver`` voxels (true for 0 liver
    voxels and any tumour)."""
    return tumor > TUMOR_LIVER_RATIO * liver


def missing_flag(name: str) -> str:
    """The flag of an annotated label without voxels."""
    return f"{MISSING_PREFIX}{name}"


def is_rule_flag(flag: str) -> bool:
    """Whether ``flag`` is raised by a rule of this module (and so recomputed from counts)."""
    return flag == TUMOR_GT_LIVER or flag.startswith(MISSING_PREFIX)


def qc_flags(counts: Mapping[str, int], annotated: Collection[str] | None = None) -> tuple[str, ...]:
    """The flags (sorted) of one annotation's label voxel counts.

    ``annotated`` names the labels the annotation defines; with it, the tumour/liver rule needs both
    annotated and every annotated label without voxels is ``missing_<name>``. Without it (the label
    set is not known yet) only the tumour/liver rule applies, to the labels in ``counts`` (absent: 0).
    """
    flags: set[str] = set()
    both = annotated is None or (_TUMOR in annotated and _LIVER in annotated)
    if both and tumor_gt_liver(counts.get(_TUMOR, 0), counts.get(_LIVER, 0)):
        flags.add(TUMOR_GT_LIVER)
    for name in annotated or ():
        if counts.get(name, 0) == 0:
            flags.add(missing_flag(name))
    return tuple(sorted(flags))

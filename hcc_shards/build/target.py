"""The target of a build: the spacing every case is resampled to (explicit, or the cohort's
fingerprint), hence the config hash and the version URL. Resolved once, on the selected cases."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hcc_shards.build import progress
from hcc_shards.build.plan import BuildPlan
from hcc_shards.config import BuildConfig
from hcc_shards.dicom.pairing import Pairing
from hcc_shards.shards import auto_target_spacing, version_url


@dataclass(frozen=True)
class BuildTarget:
    """What every case of this build is written to: resolved once, shared by all cases."""

    config: BuildConfig
    """The plan's config with the target spacing resolved (None only when there is no case)."""
    version_url: str
    """``OUTPUT/versions/<config_hash>``."""
    cases: int
    """Cases selected for this build (after --limit)."""


def resolve_target(spacings: list[tuple[float, float, float]], plan: BuildPlan) -> BuildTarget:
    """Explicit spacing as given; 'auto' from the spacings of the selected cases (the fingerprint)."""
    config = plan.config
    if config.target_spacing is None and spacings:
        config = config.with_target_spacing(auto_target_spacing(spacings, config.anisotropy_threshold))
    target = BuildTarget(config=config, version_url=version_url(plan.output_url, config), cases=len(spacings))
    progress.write_total(plan.progress_dir, target.cases)
    return target


def attach_target(items: Iterable[Pairing | BuildTarget]) -> list[tuple[Pairing, BuildTarget]]:
    """Pair every pairing with the one target among ``items`` (the grouped join of BuildCases)."""
    items = list(items)
    targets = [i for i in items if isinstance(i, BuildTarget)]
    if len(targets) != 1:
        raise ValueError(f"expected exactly one BuildTarget among the grouped items, got {len(targets)}")
    return [(i, targets[0]) for i in items if not isinstance(i, BuildTarget)]

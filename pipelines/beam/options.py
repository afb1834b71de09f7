"""The build's flags as Beam pipeline options, and the plan of a Beam build.

The flags themselves are declared once, in :mod:`hcc_shards.build.flags`; Beam's own
(``--runner``, ``--direct_num_workers``, ...) parse alongside them.
"""

from __future__ import annotations

import argparse
import contextlib

from apache_beam.options.pipeline_options import PipelineOptions

from hcc_shards.build.flags import add_build_flags
from hcc_shards.build.plan import BuildPlan
from hcc_shards.errors import UnknownFlagError


class HccShardsOptions(PipelineOptions):
    """hcc-shards flags (hcc_shards.build.flags). Beam's own parse alongside."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        add_build_flags(parser)


def plan_of(options: PipelineOptions) -> BuildPlan:
    """The plan of a Beam build: its options' view of the build's flags, resolved."""
    return BuildPlan.from_flags(options.view_as(HccShardsOptions))


def _all_option_classes() -> list[type]:
    """HccShardsOptions and every PipelineOptions subclass Beam defines (its runners' included)."""
    with contextlib.suppress(ImportError):  # the Dask runner registers its options on import
        import apache_beam.runners.dask.dask_runner  # noqa: F401
    found, todo = [], [PipelineOptions]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return found


def check_flags(argv: list[str]) -> None:
    """Raise :class:`~hcc_shards.errors.UnknownFlagError` for a flag neither we nor Beam define.

    Beam drops flags it does not know with a warning, so a typo (``--spacng``) would build with the
    default. Every flag is checked by its full name (no abbreviations) against the options Beam's
    own classes declare.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for cls in _all_option_classes():
        with contextlib.suppress(argparse.ArgumentError):
            cls._add_argparse_args(parser)
    _, rest = parser.parse_known_args(argv)
    unknown = [a.split("=", 1)[0] for a in rest if a.startswith("-")]
    if unknown:
        raise UnknownFlagError(
            f"unknown flag{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; neither hcc-shards nor "
            "Apache Beam defines it (check the spelling: hcc-shards build --help, docs/RUNNERS.md)"
        )

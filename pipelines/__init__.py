"""Apache Beam wiring of the hcc-shards build: options, thin transforms, graph and runners.

The logic lives in ``hcc_shards`` (DICOM, resampling, shards) and :mod:`pipelines.steps`; the
modules here only connect it. The reader (``hcc_shards.read``) never imports this package.
Names are imported lazily so that ``python -m pipelines.build`` runs its module only once.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BuildPlan": "pipelines.options",
    "HccShardsOptions": "pipelines.options",
    "Summary": "pipelines.steps",
    "build_pipeline": "pipelines.build",
    "format_summary": "pipelines.build",
    "main": "pipelines.build",
    "run_build": "pipelines.build",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

"""Per-label statistics of a set of manifest rows, shared by the card's sections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hcc_shards.labels import LABELS
from hcc_shards.shards.manifest import ManifestRow


def label_table(rows: Sequence[ManifestRow], *, grid: str = "source") -> list[dict[str, Any]]:
    """Per label: cases holding it, coverage (fraction of cases), min/median/max volume in cm3.

    ``grid="source"`` measures on the CT grid as acquired (what the collection's own card reports),
    ``grid="stored"`` on the resampled grid a training job reads.
    """
    out = []
    for lab in LABELS:
        # Counted over the annotations that define the label: one that does not is no evidence.
        defining = [v for r in rows if (v := r.volume_ml(lab.name, grid=grid)) is not None]
        vols = [v for v in defining if v > 0]
        out.append(
            {
                "name": lab.name,
                "display": lab.display,
                "cases": len(vols),
                "coverage": len(vols) / len(defining) if defining else 0.0,
                "min": float(np.min(vols)) if vols else None,
                "median": float(np.median(vols)) if vols else None,
                "max": float(np.max(vols)) if vols else None,
            }
        )
    return out

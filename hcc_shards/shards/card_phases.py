"""DATASET.md's phase availability, from the manifest's ``phases`` columns (``--phases all``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hcc_shards.shards.manifest import ManifestRow
from hcc_shards.text import md_cell


def phase_lines(rows: Sequence[ManifestRow]) -> list[str]:
    """The card's "Phases" section; none when no case stores phase channels."""
    with_phases = [r for r in rows if r.phases]
    if not with_phases:
        return []
    sets = Counter(" + ".join(sorted(set(r.phases))) for r in with_phases)
    per_phase: Counter[str] = Counter()
    confidence: dict[str, list[float]] = {}
    for r in with_phases:
        for phase in set(r.phases):
            per_phase[phase] += 1
        for phase, c in zip(r.phases, r.phase_confidence, strict=True):
            confidence.setdefault(phase, []).append(c)
    flags = Counter(f.split(":", 1)[-1] for r in with_phases for f in r.phase_flags)
    lines = [
        "## Phases",
        "",
        f"{len(with_phases)} of {len(rows)} cases store phase channels (channel 0 is the annotated "
        "image; the study's other acquisitions of the same frame of reference follow, resampled onto "
        "its grid without registration; docs/PHASES.md).",
        "",
        "| phases available | cases |",
        "|---|---|",
    ]
    lines += [f"| {md_cell(s)} | {n} |" for s, n in sorted(sets.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines += ["", "| phase | cases with it | channels | mean confidence |", "|---|---|---|---|"]
    for phase in sorted(per_phase):
        cs = confidence.get(phase, [])
        mean = f"{sum(cs) / len(cs):.2f}" if cs else "n/a"
        lines.append(f"| {md_cell(phase)} | {per_phase[phase]} | {len(cs)} | {mean} |")
    if flags:
        lines += ["", "| channel flag | channels |", "|---|---|"]
        lines += [f"| {md_cell(f)} | {n} |" for f, n in sorted(flags.items())]
    return [*lines, ""]

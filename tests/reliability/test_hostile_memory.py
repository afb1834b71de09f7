"""A deflate bomb costs what a healthy case costs: its peak RSS, indexed, decoded and read again in
a fresh process, stays under 3x the same patient's healthy peak (benchmarks/hostile_memory_bench.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from reliability_helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from hostile_memory_bench import RATIO_BOUND, make_trees, run_probe

INFLATED = 1024 * 1024 * 1024
"""The issue's bomb: a private element of 1 GiB (the fault's own is 256 MiB), from a file of about 1 MB."""


@pytest.mark.slow
def test_a_deflate_bomb_stays_under_3x_the_healthy_peak(tmp_path: Path) -> None:
    healthy, bombed, bomb = make_trees(tmp_path, "small", INFLATED)
    assert Path(bomb).stat().st_size < 1_500_000
    a, b = run_probe(healthy), run_probe(bombed)
    assert (a["cases"], a["codes"]) == (1, {})
    # Refused at the index and again by the full read; the patient's case is still built.
    assert (b["cases"], b["codes"], b["decode_refused"]) == (1, {"too_large": 1}, 1)
    print(f"peak RSS: healthy {a['peak_rss_mib']} MiB, bomb {b['peak_rss_mib']} MiB")
    assert b["peak_rss_mib"] < RATIO_BOUND * a["peak_rss_mib"], (a, b)
    # The bound tells: inflating the element once, as pydicom does, would pass it on its own.
    assert a["peak_rss_mib"] + INFLATED / 2**20 > RATIO_BOUND * a["peak_rss_mib"]

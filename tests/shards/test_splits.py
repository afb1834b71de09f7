"""Cohort splits: counts, determinism, stratification, folds and nnU-Net split files."""

from __future__ import annotations

import json

import pytest

from hcc_shards.errors import ConfigError
from hcc_shards.shards.splits import (
    assign_splits,
    parse_split_file,
    split_counts,
    splits_from_file,
    strata_of,
)


@pytest.mark.parametrize("n", range(3, 12))
def test_every_split_has_a_patient_from_three_patients(n: int) -> None:
    patients = [f"P{i}" for i in range(n)]
    got = assign_splits(patients, seed=0)
    assert {a.split for a in got.values()} == {"train", "val", "test"}
    counts = split_counts(n, (0.8, 0.1, 0.1))
    assert [sum(a.split == s for a in got.values()) for s in ("train", "val", "test")] == list(counts)


def test_counts_follow_the_fractions() -> None:
    assert split_counts(105, (0.8, 0.1, 0.1)) == (83, 11, 11)
    assert split_counts(2, (0.8, 0.1, 0.1)) == (2, 0, 0)
    assert split_counts(10, (1.0, 0.0, 0.0)) == (10, 0, 0)
    assert split_counts(3, (0.0, 0.5, 0.5)) == (0, 1, 2)


def test_deterministic_and_seeded() -> None:
    patients = [f"P{i}" for i in range(40)]
    a = assign_splits(patients, seed=3, folds=5)
    assert a == assign_splits(list(reversed(patients)), seed=3, folds=5)
    assert a != assign_splits(patients, seed=4, folds=5)


def test_stratified_split_keeps_the_event_rate() -> None:
    patients = [f"P{i:03d}" for i in range(105)]
    events = {p: int(i % 7 < 3) for i, p in enumerate(patients)}  # 45 of 105 (43%), as the real TTP
    strata, _ = strata_of(events)
    got = assign_splits(patients, seed=0, strata=strata)
    overall = sum(events.values()) / len(events)
    for split in ("train", "val", "test"):
        members = [p for p in patients if got[p].split == split]
        rate = sum(events[p] for p in members) / len(members)
        assert abs(rate - overall) <= 1 / len(members) + 1e-9, (split, rate, overall)


def test_quantile_strata_of_a_continuous_column() -> None:
    values = {f"P{i}": float(i) for i in range(100)} | {"Pnone": None}
    strata, edges = strata_of(values)
    assert len(edges) == 3 and strata["Pnone"] == "missing"
    assert [sum(s == f"q{k}" for s in strata.values()) for k in range(1, 5)] == [25, 25, 25, 25]


def test_folds_cover_train_and_val_evenly() -> None:
    patients = [f"P{i}" for i in range(50)]
    got = assign_splits(patients, seed=0, folds=5)
    assert all((a.fold is None) == (a.split == "test") for a in got.values())
    sizes = [sum(a.fold == f for a in got.values()) for f in range(5)]
    assert max(sizes) - min(sizes) <= 1


def test_nnunet_split_file() -> None:
    doc = [
        {"train": ["A_1", "B"], "val": ["C"]},
        {"train": ["C", "B"], "val": ["A"]},
        {"train": ["X"], "val": ["B"]},
    ]
    split_file = parse_split_file(json.dumps(doc).encode(), "splits_final.json")
    got, problems = splits_from_file(split_file, {"A_1": "A", "B_1": "B", "C_1": "C", "D_1": "D"})
    assert {p: (a.split, a.fold) for p, a in got.items()} == {
        "A": ("train", 1),
        "B": ("train", 2),
        "C": ("val", 0),
        "D": ("test", None),
    }
    assert problems == ("1 entries name no case or patient of this build: X",)


@pytest.mark.parametrize("doc", ["{}", "[]", '[{"train": []}]', '[{"train": [1], "val": []}]', "nope"])
def test_malformed_split_files_are_refused(doc: str) -> None:
    with pytest.raises(ConfigError, match="split file"):
        parse_split_file(doc.encode(), "s.json")

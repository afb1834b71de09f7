"""Patient-level splits of a whole cohort: train/val/test, k folds, stratified, or from a split file.

Computed once, in the commit step, where every patient of the build is known (stratification and
"at least one patient per split" need the whole cohort). Deterministic: the same patients, seed,
fractions, strata and folds give the same assignment on every runner.

Built-in assignment (:func:`assign_splits`), in this order:

1. **counts**: with ``n`` patients, val and test get ``floor(n * f + 0.5)`` patients each, at least
   one when ``n >= 3`` and their fraction is above zero; train gets the rest (:func:`split_counts`);
2. **order**: patients sorted by stratum (``--stratify_by``; one stratum without it), then by the
   keyed draw ``u`` of :func:`hcc_shards.shards.manifest.patient_draw` (seeded);
3. **deal**: walking that order, each patient goes to the split furthest behind its share
   (``count_s * (i + 1) / n - assigned_s``, ties in train, val, test order) that is not full. Every
   prefix of the order is then within one patient of the shares, so every stratum (a run of the
   order) is split in proportion, within two patients per split;
4. **folds** (``folds = k > 0``): the patients not in test, in the same order, get folds
   ``0 .. k-1`` in turn (stratified the same way).

Strata (:func:`strata_of`): a column with at most ``bins`` distinct values is categorical (one
stratum per value); a numeric column with more is cut at its ``1/bins .. (bins-1)/bins`` quantiles.
A missing value is its own stratum, ``missing``.

A split file (:func:`splits_from_file`) is nnU-Net's ``splits_final.json``: a list of
``{"train": [...], "val": [...]}``, one per fold, naming case ids or patient ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hcc_shards.errors import ConfigError
from hcc_shards.shards.manifest import SPLITS, patient_draw

__all__ = [
    "MISSING_STRATUM",
    "Assignment",
    "SplitFile",
    "SplitReport",
    "assign_splits",
    "parse_split_file",
    "split_counts",
    "splits_from_file",
    "strata_of",
]

MISSING_STRATUM = "missing"
"""Stratum of patients whose stratification value is missing."""
DEFAULT_BINS = 4
"""Quantile bins of a continuous stratification column (quartiles)."""


@dataclass(frozen=True)
class Assignment:
    """Where one patient goes."""

    split: str
    """``train``, ``val`` or ``test``."""
    fold: int | None = None
    """Cross-validation fold (0-based) of a patient outside test, or None without folds."""


@dataclass(frozen=True)
class SplitFile:
    """A parsed nnU-Net ``splits_final.json``: per fold, the train and val entries."""

    folds: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    """(train entries, val entries) per fold, as written (case ids or patient ids)."""
    source: str = ""
    """URL it was read from."""
    sha256: str = ""
    """sha256 of the file's bytes."""


@dataclass(frozen=True)
class SplitReport:
    """How the splits of a build were made, and what could not be used (DATASET.md, the summary)."""

    method: str
    """``cohort`` (built-in), ``stratified`` or ``file``."""
    stratify_by: str = ""
    """Column the splits are stratified by."""
    strata: tuple[tuple[str, int], ...] = ()
    """(stratum, patients) of a stratified split."""
    edges: tuple[float, ...] = ()
    """Quantile edges of a continuous stratification column."""
    folds: int = 0
    """Folds assigned (0: none)."""
    problems: tuple[str, ...] = field(default_factory=tuple)
    """Findings: unknown entries of a split file, a stratification column without values, ..."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "stratify_by": self.stratify_by,
            "strata": dict(self.strata),
            "edges": list(self.edges),
            "folds": self.folds,
            "problems": list(self.problems),
        }


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Patients per split (train, val, test) for ``n`` patients (rule 1 of the module docstring)."""
    _check_fractions(fractions)
    ftrain, fv, ft = (float(f) for f in fractions)
    val = math.floor(n * fv + 0.5)
    test = math.floor(n * ft + 0.5)
    floor_ = 1 if n >= 3 else 0
    if fv > 0:
        val = max(val, floor_)
    if ft > 0:
        test = max(test, floor_)
    keep_train = 1 if ftrain > 0 and n >= 1 else 0
    while n - val - test < keep_train and max(val, test) > floor_:
        if val >= test:
            val -= 1
        else:
            test -= 1
    while val + test > n:  # fractions without train: trim the larger
        if val >= test:
            val -= 1
        else:
            test -= 1
    return n - val - test, val, test


def assign_splits(
    patients: Sequence[str],
    seed: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    strata: Mapping[str, str] | None = None,
    folds: int = 0,
) -> dict[str, Assignment]:
    """patient -> Assignment by the built-in rule (module docstring); ``strata`` maps patient -> stratum."""
    if folds < 0:
        raise ValueError(f"folds must be >= 0, got {folds}")
    ids = sorted(set(patients))
    order = sorted(ids, key=lambda p: ((strata or {}).get(p, ""), patient_draw(p, seed), p))
    quota = split_counts(len(order), fractions)
    assigned = [0, 0, 0]
    split_of: dict[str, str] = {}
    for i, p in enumerate(order):
        open_ = [s for s in range(3) if assigned[s] < quota[s]]
        best = max(open_, key=lambda s: (quota[s] * (i + 1) / len(order) - assigned[s], -s))
        assigned[best] += 1
        split_of[p] = SPLITS[best]
    fold_of: dict[str, int] = {}
    if folds:
        for j, p in enumerate(q for q in order if split_of[q] != "test"):
            fold_of[p] = j % folds
    return {p: Assignment(split_of[p], fold_of.get(p)) for p in ids}


def strata_of(
    values: Mapping[str, Any], bins: int = DEFAULT_BINS
) -> tuple[dict[str, str], tuple[float, ...]]:
    """(patient -> stratum label, quantile edges) of one column's values (module docstring)."""
    present = {p: v for p, v in values.items() if not _missing(v)}
    distinct = sorted({_label(v) for v in present.values()})
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present.values())
    out = {p: MISSING_STRATUM for p in values}
    if numeric and len(distinct) > bins:
        nums = np.asarray([float(v) for v in present.values()])
        edges = tuple(float(e) for e in np.quantile(nums, [k / bins for k in range(1, bins)]))
        for p, v in present.items():
            out[p] = f"q{int(np.searchsorted(edges, float(v), side='right')) + 1}"
        return out, edges
    for p, v in present.items():
        out[p] = _label(v)
    return out, ()


def parse_split_file(data: bytes, source: str) -> SplitFile:
    """Parse nnU-Net's ``splits_final.json`` form; ConfigError naming what is wrong."""
    import hashlib

    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"split file {source!r} is not JSON: {e}") from e
    if not isinstance(doc, list) or not doc:
        raise ConfigError(
            f'split file {source!r} must be a non-empty list of {{"train": [...], "val": [...]}} '
            f"(nnU-Net's splits_final.json), got {type(doc).__name__}"
        )
    folds = []
    for i, fold in enumerate(doc):
        if not isinstance(fold, dict) or set(fold) - {"train", "val"} or "val" not in fold:
            raise ConfigError(
                f"split file {source!r} fold {i}: expected an object with 'train' and 'val' lists, got {fold!r:.200}"
            )
        parts = []
        for name in ("train", "val"):
            entries = fold.get(name, [])
            if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
                raise ConfigError(
                    f"split file {source!r} fold {i}: {name!r} must be a list of non-empty strings"
                )
            parts.append(tuple(entries))
        folds.append((parts[0], parts[1]))
    return SplitFile(folds=tuple(folds), source=source, sha256=hashlib.sha256(data).hexdigest())


def splits_from_file(
    split_file: SplitFile,
    patient_of_case: Mapping[str, str],
    pseudonym: Callable[[str], str] | None = None,
) -> tuple[dict[str, Assignment], tuple[str, ...]]:
    """patient -> Assignment from a split file, and the problems found.

    An entry names a case id, else a patient id (mapped through ``pseudonym`` when the build has a
    key). A patient in fold 0's val list is ``val``; elsewhere in the file, ``train``; absent from the
    file, ``test``. Its fold is the one fold whose val list holds it (None when no fold or several do).
    """
    patients = set(patient_of_case.values())
    problems: list[str] = []

    def resolve(entry: str) -> str | None:
        if entry in patient_of_case:
            return patient_of_case[entry]
        if entry in patients:
            return entry
        if pseudonym is not None and pseudonym(entry) in patients:
            return pseudonym(entry)
        return None

    unknown: list[str] = []
    in_val: dict[str, list[int]] = {}
    named: set[str] = set()
    for i, (train, val) in enumerate(split_file.folds):
        for part, entries in (("train", train), ("val", val)):
            for e in entries:
                p = resolve(e)
                if p is None:
                    unknown.append(e)
                    continue
                named.add(p)
                if part == "val" and i not in in_val.setdefault(p, []):
                    in_val[p].append(i)
        both = {resolve(e) for e in train} & {resolve(e) for e in val} - {None}
        problems += [f"fold {i}: patient {p} is in both train and val" for p in sorted(both)]  # type: ignore[type-var]
    if unknown:
        shown = ", ".join(sorted(set(unknown))[:10])
        problems.append(f"{len(set(unknown))} entries name no case or patient of this build: {shown}")
    problems += [
        f"patient {p} is in the val list of folds {v}" for p, v in sorted(in_val.items()) if len(v) > 1
    ]
    out: dict[str, Assignment] = {}
    for p in sorted(patients):
        if p not in named:
            out[p] = Assignment("test")
            continue
        folds = in_val.get(p, [])
        out[p] = Assignment("val" if 0 in folds else "train", folds[0] if len(folds) == 1 else None)
    return out, tuple(problems)


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)

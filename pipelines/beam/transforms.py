"""Thin Beam PTransforms of the build.

As little logic as possible lives here: each transform is a Map, FlatMap or GroupByKey around
a stage function of :mod:`hcc_shards.build`, which is tested without Beam. Nothing here does I/O
while the pipeline is being constructed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from hcc_shards.build import cases, commit, index, listing, pair, target
from hcc_shards.build.plan import BuildPlan
from pipelines.beam.labels import SPREAD_GROUP


@dataclass
class Spread(beam.PTransform):
    """Redistribute elements across workers by a stable key (a reshuffle that works on every runner).

    Beam's DaskRunner translates ``beam.Reshuffle`` to a no-op, so on Dask only a GroupByKey moves
    data between partitions. The key is the element's identity, so grouping merges nothing.
    """

    key: Callable[[Any], str]
    """Stable identity of an element (hashed by the runner to pick a partition)."""

    def expand(self, pcoll):
        return (
            pcoll
            | "Key" >> beam.Map(lambda x, key: (key(x), x), self.key)
            | SPREAD_GROUP >> beam.GroupByKey()
            | "Ungroup" >> beam.FlatMap(lambda kv: kv[1])
        )


@dataclass
class ListFiles(beam.PTransform):
    """PBegin -> FileRef: parallel listing of the input by top-level prefix."""

    plan: BuildPlan

    def expand(self, pbegin):
        tasks = pbegin | "Tasks" >> beam.Create(listing.listing_tasks(self.plan))
        if self.plan.spread_inputs:
            tasks = tasks | "Spread tasks" >> Spread(key=lambda t: str(t.shard))
        return tasks | "List" >> beam.FlatMap(listing.list_task, self.plan)


@dataclass
class IndexHeaders(beam.PTransform):
    """FileRef -> InstanceHeader | QuarantineRecord (header bytes only)."""

    plan: BuildPlan

    def expand(self, refs):
        if self.plan.spread_inputs:
            refs = refs | "Spread files" >> Spread(key=lambda r: listing.url_key(r.url))
        return refs | "Read header" >> beam.Map(index.index_one, self.plan)


@dataclass
class PairByPatient(beam.PTransform):
    """InstanceHeader -> Pairing | QuarantineRecord, grouping instances by PatientID."""

    plan: BuildPlan

    def expand(self, headers):
        return (
            headers
            | "Key by patient" >> beam.Map(lambda h: (h.patient_id, h))
            | "Group by patient" >> beam.GroupByKey()
            | "Pair" >> beam.FlatMap(lambda kv, plan: pair.pair_one_patient(kv[0], kv[1], plan), self.plan)
        )


@dataclass
class UniqueCases(beam.PTransform):
    """Pairing -> Pairing | QuarantineRecord: one pairing per case id, the others recorded."""

    plan: BuildPlan

    def expand(self, pairings):
        return (
            pairings
            | "Key by case id" >> beam.Map(lambda p: (pair.case_id_of(p), p))
            | "Group by case id" >> beam.GroupByKey()
            | "Keep one" >> beam.FlatMap(lambda kv, plan: pair.unique_case(kv[0], kv[1], plan), self.plan)
        )


@dataclass
class SelectCases(beam.PTransform):
    """Pairing -> Pairing: all of them, or the first ``limit`` by case key."""

    limit: int

    def expand(self, pairings):
        if not self.limit:
            return pairings
        return (
            pairings
            | "First cases"
            >> beam.combiners.Top.Of(self.limit, key=pair.case_sort_key, reverse=True).without_defaults()
            | "Unlist" >> beam.FlatMap(lambda xs: xs)
        )


@dataclass
class ResolveTarget(beam.PTransform):
    """Pairing -> one BuildTarget: the fingerprint (target spacing), config hash and version URL."""

    plan: BuildPlan

    def expand(self, pairings):
        return (
            pairings
            | "Spacing" >> beam.Map(pair.pairing_spacing)
            | "All spacings" >> beam.combiners.ToList().without_defaults()
            | "Resolve" >> beam.Map(target.resolve_target, self.plan)
        )


@dataclass
class BuildCases(beam.PTransform):
    """Pairing -> Outcome: the pairings of each image grouped, then each image built against the one
    BuildTarget (its CT decoded and resampled once, each SEG's labels once).

    ``join="side_input"`` hands the target to every image as a singleton side input.
    ``join="grouped"`` brings target and pairings together with a GroupByKey on one key and spreads
    the pairs out again: Beam's DaskRunner evaluates a side input by recomputing its whole upstream
    graph inside every task that reads it, so on Dask the grouped join is far cheaper.
    """

    plan: BuildPlan
    target: Any
    """PCollection holding the single BuildTarget."""

    def expand(self, pairings):
        if self.plan.target_join == "grouped":
            return (
                (
                    pairings | "Key pairings" >> beam.Map(lambda p: (0, p)),
                    self.target | "Key target" >> beam.Map(lambda t: (0, t)),
                )
                | "Together" >> beam.Flatten()
                | "Group with target" >> beam.GroupByKey()
                | "Attach target" >> beam.FlatMap(lambda kv: target.attach_target(kv[1]))
                | "Key by image" >> beam.Map(lambda pt: (pair.image_group_key(pt[0]), pt))
                | "Group by image" >> beam.GroupByKey()
                | "Image units" >> beam.Map(lambda kv: (kv[0], list(kv[1])))
                | "Spread cases" >> Spread(key=lambda kv: kv[0])
                | "Build case"
                >> beam.FlatMap(
                    lambda kv, plan: cases.build_image([p for p, _ in kv[1]], kv[1][0][1], plan),
                    self.plan,
                )
            )
        return (
            pairings
            | "Key by image" >> beam.Map(lambda p: (pair.image_group_key(p), p))
            | "Group by image" >> beam.GroupByKey()
            | "Image units" >> beam.Map(lambda kv: (kv[0], list(kv[1])))
            | "Spread cases" >> Spread(key=lambda kv: kv[0])
            | "Build case"
            >> beam.FlatMap(
                lambda kv, target, plan: cases.build_image(list(kv[1]), target, plan),
                beam.pvalue.AsSingleton(self.target),
                self.plan,
            )
        )


@dataclass
class Commit(beam.PTransform):
    """Outcome -> one Summary: the single terminal step that commits the dataset."""

    plan: BuildPlan

    def expand(self, outcomes):
        return (
            outcomes
            | "All outcomes" >> beam.combiners.ToList().without_defaults()
            | "Commit dataset" >> beam.Map(commit.commit_outcomes, self.plan)
        )

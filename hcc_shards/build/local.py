"""The stages driven in this process, one after the other: the reference every engine must agree
with, and what ``hcc-shards plan`` runs up to the pairing.

Engines (Beam's runners in ``pipelines/beam``, Spark in ``pipelines/spark``) call these same stage
functions; they only decide where each call runs and how the groups are formed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from hcc_shards.build.cases import build_image
from hcc_shards.build.commit import Summary, commit_outcomes
from hcc_shards.build.index import add_index_stats, index_one, index_stats
from hcc_shards.build.listing import list_task, listing_tasks
from hcc_shards.build.outcomes import Indexed, Outcome, Quarantined, Started, TargetResolved
from hcc_shards.build.pair import (
    case_id_of,
    first_cases,
    image_group_key,
    pair_one_patient,
    pairing_spacing,
    unique_case,
)
from hcc_shards.build.plan import BuildPlan
from hcc_shards.build.target import resolve_target
from hcc_shards.dicom.header import InstanceHeader
from hcc_shards.dicom.pairing import Pairing
from hcc_shards.quarantine import QuarantineRecord

DEFAULT_WORKERS = 8
"""Concurrent header reads; object stores reward a few requests in flight."""


def list_and_index(
    plan: BuildPlan, workers: int = DEFAULT_WORKERS
) -> list[InstanceHeader | QuarantineRecord]:
    """Every listing task of ``plan``, then every header (``workers`` reads in flight), in URL order."""
    refs = [ref for task in listing_tasks(plan) for ref in list_task(task, plan)]
    if workers <= 1 or len(refs) <= 1:
        return [index_one(r, plan) for r in refs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda r: index_one(r, plan), refs))


def pair_all(
    headers: Iterable[InstanceHeader], plan: BuildPlan
) -> tuple[list[Pairing], list[QuarantineRecord]]:
    """Headers grouped by PatientID and paired, then one pairing per case id."""
    by_patient: dict[str, list[InstanceHeader]] = defaultdict(list)
    for h in headers:
        by_patient[h.patient_id].append(h)
    by_case: dict[str, list[Pairing]] = defaultdict(list)
    records: list[QuarantineRecord] = []
    for patient in sorted(by_patient):
        for item in pair_one_patient(patient, by_patient[patient], plan):
            if isinstance(item, QuarantineRecord):
                records.append(item)
            else:
                by_case[case_id_of(item)].append(item)
    pairings: list[Pairing] = []
    for case_id in sorted(by_case):
        for item in unique_case(case_id, by_case[case_id], plan):
            (records if isinstance(item, QuarantineRecord) else pairings).append(item)
    return pairings, records


def run_local(plan: BuildPlan, workers: int = DEFAULT_WORKERS) -> Summary:
    """The whole build in this process: list, index, pair, select, target, build each image, commit."""
    indexed = list_and_index(plan, workers)
    headers = [h for h in indexed if isinstance(h, InstanceHeader)]
    pairings, records = pair_all(headers, plan)
    selected = first_cases(pairings, plan.limit)
    outcomes: list[Outcome] = [
        Started(),
        Indexed(add_index_stats(index_stats(i) for i in indexed)),
        *(Quarantined(r) for r in indexed if isinstance(r, QuarantineRecord)),
        *(Quarantined(r) for r in records),
    ]
    if selected:
        target = resolve_target([pairing_spacing(p) for p in selected], plan)
        outcomes.append(TargetResolved(target))
        images: dict[str, list[Pairing]] = defaultdict(list)
        for p in selected:
            images[image_group_key(p)].append(p)
        for image_id in sorted(images):
            outcomes.extend(build_image(images[image_id], target, plan))
    return commit_outcomes(outcomes, plan)

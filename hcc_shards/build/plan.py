"""The resolved plan of one build: :class:`BuildPlan`, the one frozen value every stage receives.

``BuildPlan.from_flags`` is the only place where the build's flags (:mod:`hcc_shards.build.flags`)
are interpreted; it does no network I/O beyond reading the small files they name.
"""

from __future__ import annotations

import json
import os
import time
from argparse import Namespace
from dataclasses import dataclass, field, replace
from typing import Any

from hcc_shards import idc, storage
from hcc_shards.annotation import parse_sources
from hcc_shards.build.flags import DEFAULT_LISTING_SHARDS, FLAGS, PSEUDONYMIZE_KEY_ENV
from hcc_shards.build.inputs import INPUT_LIST_MARK, clean_input_entry, idc_selections, input_entries
from hcc_shards.config import BuildConfig
from hcc_shards.errors import ConfigError
from hcc_shards.labels import LABEL_BY_NAME, LABEL_BY_VALUE
from hcc_shards.shards.splits import SplitFile, parse_split_file
from hcc_shards.storage import parse_storage_options


@dataclass(frozen=True)
class BuildPlan:
    """Everything a pipeline step needs to know about one build; pickled into every step."""

    input_url: str
    """INPUT as given: one prefix or object URL, several separated by commas, or ``@URL`` entries
    naming list files (:func:`resolve_inputs` turns it into the prefixes to list)."""
    output_url: str
    """Root of the dataset (versions live under it)."""
    config: BuildConfig
    """Build configuration; ``target_spacing`` None means auto."""
    input_storage_options: dict[str, Any] = field(default_factory=dict, hash=False)
    """fsspec options for reading the input."""
    output_storage_options: dict[str, Any] = field(default_factory=dict, hash=False)
    """fsspec options for writing the output."""
    limit: int = 0
    """Build at most this many cases (0: all)."""
    listing_shards: int = DEFAULT_LISTING_SHARDS
    """Parallel listing tasks."""
    progress_dir: str | None = None
    """Local directory for progress reports, or None for no reports."""
    started_at: float = 0.0
    """Unix time when the launcher started the build (for the summary's wall time)."""
    target_join: str = "side_input"
    """'side_input' or 'grouped' (see pipelines.beam.transforms.BuildCases)."""
    spread_inputs: bool = True
    """Redistribute listing tasks and files across workers before indexing (pipelines.beam.transforms)."""
    allow_empty: bool = False
    """Commit a version with no case (otherwise such a build commits nothing)."""
    lock_wait_s: float = 0.0
    """How long the launcher waits for another build's lease on OUTPUT (hcc_shards.lease)."""
    input_index: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    """Per ``idc://`` entry, what the index says the build touches and which index said it
    (:meth:`hcc_shards.idc.IdcSelection.record`); kept in dataset.json's summary. The analysis result
    of each selected series goes into ``config.analysis_result_ids`` (it decides annotation_source)."""
    clinical_url: str = ""
    """Clinical table to join at commit ('' for none)."""
    clinical_key: str = ""
    """Its join column ('' to detect)."""
    split_file: SplitFile | None = None
    """Parsed --split_file (read when the plan is made, like --label_map)."""
    dry_run: bool = False
    """A plan of ``hcc-shards plan``: it writes nothing, so it has no OUTPUT."""

    def __post_init__(self) -> None:
        if not self.input_url:
            raise ConfigError("the input URL is empty; pass INPUT (or --input) naming a DICOM collection")
        if not self.output_url and not self.dry_run:
            raise ConfigError("the output URL is empty; pass OUTPUT (or --output) naming where to write")
        if self.limit < 0:
            raise ConfigError(f"--limit must be >= 0, got {self.limit}")
        if self.target_join not in ("side_input", "grouped"):
            raise ConfigError(f"--target_join must be 'side_input' or 'grouped', got {self.target_join!r}")
        if self.lock_wait_s < 0:
            raise ConfigError(f"--lock_wait must be >= 0 seconds, got {self.lock_wait_s:g}")
        if self.listing_shards < 1:
            raise ConfigError(f"--listing_shards must be >= 1, got {self.listing_shards}")
        for entry in input_entries(self.input_url):
            if entry.startswith(INPUT_LIST_MARK):
                if not entry[1:].strip():
                    raise ConfigError(f"INPUT entry {entry!r} names no list file; expected @URL")
                continue
            if idc.is_idc_url(entry):
                idc.parse_url(entry)
                continue
            cleaned = clean_input_entry(entry, "INPUT")
            if self.output_url and storage.join(self.output_url, "") == storage.join(cleaned, ""):
                raise ConfigError(f"output {self.output_url!r} must differ from input {cleaned!r}")

    @classmethod
    def from_flags(cls, o: Any, *, dry_run: bool = False) -> BuildPlan:
        """Resolve parsed flags (:mod:`hcc_shards.build.flags`: an argparse namespace, or Beam's view of
        them) into a plan. Reads the --label_map, --build_config and --split_file files, nothing else."""
        shared = parse_storage_options(o.storage_options, "--storage_options")
        in_opts = {**shared, **parse_storage_options(o.input_storage_options, "--input_storage_options")}
        out_opts = {**shared, **parse_storage_options(o.output_storage_options, "--output_storage_options")}
        config = (
            BuildConfig.from_dict(_read_json(o.build_config, in_opts)) if o.build_config else BuildConfig()
        )
        updates: dict[str, Any] = {}
        if o.spacing is not None:
            updates["target_spacing"] = parse_spacing(o.spacing)
        if o.seed is not None:
            updates["seed"] = int(o.seed)
        if o.annotation_sources:
            try:
                updates["annotation_sources"] = parse_sources(o.annotation_sources)
            except ValueError as exc:
                raise ConfigError(f"--annotation_sources: {exc}") from exc
        if o.label_map:
            codes, synonyms = parse_label_map(_read_json(o.label_map, in_opts), config)
            updates["segment_codes"] = codes
            updates["segment_synonyms"] = synonyms
        key = (
            o.pseudonymize_key if o.pseudonymize_key is not None else os.environ.get(PSEUDONYMIZE_KEY_ENV, "")
        )
        if o.pseudonymize and not key:
            raise ConfigError(
                f"--pseudonymize needs a key: set ${PSEUDONYMIZE_KEY_ENV} (or pass --pseudonymize_key)"
            )
        if key:
            updates["pseudonymize_key"] = key
        if o.stratify_by:
            updates["stratify_by"] = str(o.stratify_by)
        if o.folds is not None:
            updates["folds"] = int(o.folds)
        if o.features:
            updates["features"] = True
        if o.phases not in (None, "none"):
            updates["phases"] = str(o.phases)
        split_file = None
        if o.split_file:
            split_file = _read_split_file(o.split_file, in_opts)
            updates["split_file_sha256"] = split_file.sha256
        clinical = str(o.clinical or "")
        if clinical and "://" not in clinical and not os.path.isfile(clinical):
            raise ConfigError(f"--clinical {clinical!r} does not exist; expected a CSV, XLSX or Parquet file")
        return with_inputs(
            cls(
                input_url=o.input or "",
                output_url=o.output or "",
                config=replace(config, **updates),
                input_storage_options=in_opts,
                output_storage_options=out_opts,
                limit=int(o.limit or 0),
                listing_shards=int(o.listing_shards),
                progress_dir=o.progress_dir,
                started_at=time.time(),
                target_join=o.target_join,
                spread_inputs=o.spread_inputs != "false",
                allow_empty=bool(o.allow_empty),
                lock_wait_s=float(o.lock_wait or 0.0),
                clinical_url=clinical,
                clinical_key=str(o.clinical_key or ""),
                split_file=split_file,
                dry_run=dry_run,
            )
        )


def with_inputs(plan: BuildPlan) -> BuildPlan:
    """``plan`` with what its ``idc://`` entries bring: the index's record of each selection, the
    storage options of its bucket, and the analysis results of the selected series (they decide
    annotation_source). Reads the IDC index (a local file); a plan without such entries is returned
    as it is."""
    selections = idc_selections(plan.input_url)
    if not selections:
        return plan
    config = replace(
        plan.config,
        analysis_result_ids=tuple(sorted({p for sel in selections for p in sel.analysis_results})),
    )
    return replace(
        plan,
        config=config,
        input_storage_options=idc.storage_options_for(
            selections[0].query.protocol, plan.input_storage_options
        ),
        input_index=tuple(sel.record() for sel in selections),
    )


def flag_values(**values: Any) -> Namespace:
    """Every build flag at its default, with ``values`` (by flag name) set: a plan made in code."""
    ns = Namespace(**{f.name: f.default for f in FLAGS})
    for key, value in values.items():
        if not hasattr(ns, key):
            raise ConfigError(f"{key!r} is not a build flag")
        setattr(ns, key, value)
    return ns


def parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    """'auto' -> None; 'z,y,x' -> three positive floats (mm)."""
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(not v > 0 for v in values):
        raise ConfigError(f"--spacing must be 'auto' or three positive mm values 'z,y,x', got {text!r}")
    return values  # type: ignore[return-value]


def parse_label_map(
    data: dict[str, Any], config: BuildConfig
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    """Merge a label map ``{"codes": {"SCT:123": "tumor"}, "synonyms": {"mass": 2}}`` into the defaults.

    Values are label names (``hcc_shards.labels``) or values; user entries win over the defaults.
    Synonym keys are matched lower case and stripped, as the decoder does.
    """
    unknown = set(data) - {"codes", "synonyms"}
    if unknown:
        raise ConfigError(
            f"label map has unknown sections {sorted(unknown)}; expected 'codes' and/or 'synonyms'"
        )
    codes = dict(config.segment_codes)
    synonyms = dict(config.segment_synonyms)
    for code, target in (data.get("codes") or {}).items():
        if ":" not in code:
            raise ConfigError(f"label map code {code!r} must be 'SCHEME:value', e.g. 'SCT:10200004'")
        codes[code] = _label_value(target, code)
    for text, target in (data.get("synonyms") or {}).items():
        synonyms[text.strip().lower()] = _label_value(target, text)
    return tuple(sorted(codes.items())), tuple(sorted(synonyms.items()))


def _label_value(target: Any, key: str) -> int:
    if isinstance(target, int) and not isinstance(target, bool) and target in LABEL_BY_VALUE:
        return target
    if isinstance(target, str) and target in LABEL_BY_NAME:
        return LABEL_BY_NAME[target].value
    raise ConfigError(
        f"label map entry {key!r} -> {target!r}: expected one of {sorted(LABEL_BY_NAME)} "
        f"or a value in {sorted(LABEL_BY_VALUE)}"
    )


def _read_split_file(url: str, storage_options: dict[str, Any]) -> SplitFile:
    fs, path = storage.filesystem(url, storage_options if "://" in url else {})
    try:
        data = fs.cat_file(path)
    except OSError as e:
        raise ConfigError(f"cannot read the split file {url!r}: {e}") from e
    return parse_split_file(data, url)


def _read_json(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    fs, path = storage.filesystem(url, storage_options if "://" in url else {})
    try:
        data = json.loads(fs.cat_file(path))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read JSON file {url!r}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{url!r} must hold a JSON object, got {type(data).__name__}")
    return data

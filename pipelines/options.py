"""Command-line flags of the build, next to Beam's own, and the resolved :class:`BuildPlan`.

``HccShardsOptions`` only declares flags. ``BuildPlan.from_options`` turns them into one frozen value
(input, output, :class:`~hcc_shards.config.BuildConfig`, storage options) that every pipeline step
receives. It is the only place where flags are interpreted, and it does no network I/O.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from hcc_shards import idc, storage
from hcc_shards.annotation import parse_sources
from hcc_shards.config import BuildConfig
from hcc_shards.errors import ConfigError, UnknownFlagError
from hcc_shards.labels import LABEL_BY_NAME, LABEL_BY_VALUE
from hcc_shards.shards.splits import SplitFile, parse_split_file
from hcc_shards.storage import parse_storage_options

PSEUDONYMIZE_KEY_ENV = "HCC_SHARDS_PSEUDONYMIZE_KEY"
"""Environment variable holding the key for --pseudonymize (keeps the key out of process lists)."""

DEFAULT_LISTING_SHARDS = 16
"""Parallel listing tasks; on Dask this is also the number of partitions of every later stage."""

INPUT_LIST_MARK = "@"
"""An INPUT entry ``@URL`` names a text file of prefixes or object URLs, one per line."""


class _JoinRepeated(argparse.Action):
    """``--input A --input B`` -> ``"A,B"``: INPUT stays one string everywhere (template parameters,
    the options Dataflow hands its workers), and a comma list means the same as repeated flags."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        prior = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{prior},{values}" if prior else values)


class HccShardsOptions(PipelineOptions):
    """hcc-shards flags. Beam's own (``--runner``, ``--direct_num_workers``, ...) parse alongside."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--input",
            action=_JoinRepeated,
            help="DICOM to build: a prefix or object URL (gs://, s3://, a local path); several, "
            "comma-separated or with --input repeated; '@URL' of a text file with one prefix or object "
            "URL per line (# comments and blank lines ignored, a trailing '/*' tolerated). See "
            "docs/RUNNERS.md.",
        )
        parser.add_argument("--output", help="URL of the dataset to write (gs://, s3://, a local path).")
        parser.add_argument(
            "--spacing",
            default=None,
            help="Target spacing 'z,y,x' in mm, or 'auto' (median of the cohort with nnU-Net's anisotropy "
            "rule); the default is auto unless --build_config sets target_spacing.",
        )
        parser.add_argument(
            "--label_map",
            default=None,
            help="JSON file mapping segment label text or 'SCHEME:code' to a label name or value "
            '({"codes": {...}, "synonyms": {...}}); entries override the defaults.',
        )
        parser.add_argument(
            "--seed",
            "--split_seed",
            dest="seed",
            type=int,
            default=None,
            help="Seed of the patient-level split and of foreground sampling (default 0).",
        )
        parser.add_argument(
            "--limit", type=int, default=0, help="Build at most this many cases (the first by case key)."
        )
        parser.add_argument(
            "--annotation_sources",
            "--annotation-sources",
            dest="annotation_sources",
            default=None,
            help="Comma-separated annotation sources to build: manual, ai, ai_corrected, unknown "
            "(default: all; docs/FORMAT.md 'Annotation source').",
        )
        parser.add_argument(
            "--storage_options",
            default="",
            help="JSON fsspec storage options for input and output (e.g. endpoint_url, token).",
        )
        parser.add_argument(
            "--input_storage_options", default="", help="JSON storage options for the input only."
        )
        parser.add_argument(
            "--output_storage_options", default="", help="JSON storage options for the output only."
        )
        parser.add_argument(
            "--build_config",
            default=None,
            help="JSON file of BuildConfig fields (see hcc_shards.config); flags given here override it.",
        )
        parser.add_argument(
            "--pseudonymize",
            action="store_true",
            default=False,
            help=f"Replace patient and study identifiers by a keyed hash; the key is read from ${PSEUDONYMIZE_KEY_ENV}.",
        )
        parser.add_argument(
            "--pseudonymize_key",
            default=None,
            help=f"The pseudonymization key itself (visible in process lists; prefer --pseudonymize and ${PSEUDONYMIZE_KEY_ENV}).",
        )
        parser.add_argument(
            "--listing_shards",
            type=int,
            default=DEFAULT_LISTING_SHARDS,
            help="Number of parallel listing tasks over the input's top-level prefixes.",
        )
        parser.add_argument(
            "--target_join",
            choices=("side_input", "grouped"),
            default="side_input",
            help="How cases receive the resolved target: a side input, or a grouped join (used on Dask).",
        )
        parser.add_argument(
            "--spread_inputs",
            choices=("true", "false"),
            default="true",
            help="Redistribute listing tasks and files with a GroupByKey before indexing (off on Dask, "
            "where every listing task already is its own partition).",
        )
        parser.add_argument(
            "--allow_empty",
            action="store_true",
            default=False,
            help="Commit (and move LATEST.json to) a version even when the build found no case to write.",
        )
        parser.add_argument(
            "--clinical",
            default=None,
            help="Clinical table (CSV, TSV, XLSX or Parquet, any fsspec URL) joined per patient into "
            "clinical.parquet; problems are reported, never fatal.",
        )
        parser.add_argument(
            "--clinical_key",
            default=None,
            help="Join column of --clinical (default: the first of PatientID, ID, TCIA_ID present).",
        )
        parser.add_argument(
            "--stratify_by",
            default=None,
            help="Clinical (or manifest) column the patient-level split is stratified by; continuous "
            "columns in quartiles.",
        )
        parser.add_argument(
            "--folds",
            type=int,
            default=None,
            help="Cross-validation folds (manifest column 'fold'; 0: none).",
        )
        parser.add_argument(
            "--split_file",
            default=None,
            help="Splits from a file in nnU-Net's splits_final.json form (a list of {train, val} per "
            "fold, case or patient ids) instead of the built-in ones.",
        )
        parser.add_argument(
            "--features",
            action="store_true",
            default=False,
            help="Compute radiomics features per case and label (features.parquet, docs/FEATURES.md).",
        )
        parser.add_argument(
            "--progress_dir",
            default=None,
            help="Local directory where workers report progress (set by the launcher on local runners).",
        )


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
    """'side_input' or 'grouped' (see pipelines.transforms.BuildCases)."""
    spread_inputs: bool = True
    """Redistribute listing tasks and files across workers before indexing (pipelines.transforms)."""
    allow_empty: bool = False
    """Commit a version with no case (otherwise such a build commits nothing)."""
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

    def __post_init__(self) -> None:
        if not self.input_url:
            raise ConfigError("the input URL is empty; pass INPUT (or --input) naming a DICOM collection")
        if not self.output_url:
            raise ConfigError("the output URL is empty; pass OUTPUT (or --output) naming where to write")
        if self.limit < 0:
            raise ConfigError(f"--limit must be >= 0, got {self.limit}")
        if self.target_join not in ("side_input", "grouped"):
            raise ConfigError(f"--target_join must be 'side_input' or 'grouped', got {self.target_join!r}")
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
            if storage.join(self.output_url, "") == storage.join(cleaned, ""):
                raise ConfigError(f"output {self.output_url!r} must differ from input {cleaned!r}")

    @classmethod
    def from_options(cls, options: PipelineOptions) -> BuildPlan:
        """Resolve flags into a plan. Reads the --label_map and --build_config files, nothing else."""
        o = options.view_as(HccShardsOptions)
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
        selections = idc_selections(o.input or "")
        if selections:
            in_opts = idc.storage_options_for(selections[0].query.protocol, in_opts)
            updates["analysis_result_ids"] = tuple(
                sorted({p for sel in selections for p in sel.analysis_results})
            )
        if o.stratify_by:
            updates["stratify_by"] = str(o.stratify_by)
        if o.folds is not None:
            updates["folds"] = int(o.folds)
        if o.features:
            updates["features"] = True
        split_file = None
        if o.split_file:
            split_file = _read_split_file(o.split_file, in_opts)
            updates["split_file_sha256"] = split_file.sha256
        clinical = str(o.clinical or "")
        if clinical and "://" not in clinical and not os.path.isfile(clinical):
            raise ConfigError(f"--clinical {clinical!r} does not exist; expected a CSV, XLSX or Parquet file")
        return cls(
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
            input_index=tuple(sel.record() for sel in selections),
            clinical_url=clinical,
            clinical_key=str(o.clinical_key or ""),
            split_file=split_file,
        )


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


def input_entries(text: str) -> list[str]:
    """INPUT split at commas, each entry stripped, empty ones dropped (no I/O).

    Commas inside the query of an ``idc://`` entry (``?patients=HCC_001,HCC_002``) stay in it: a
    piece that is neither a URL nor an @list continues the ``idc://...?`` entry before it.
    """
    out: list[str] = []
    for piece in (e.strip() for e in str(text or "").split(",")):
        if not piece:
            continue
        continues = out and idc.is_idc_url(out[-1]) and "?" in out[-1]
        if continues and "://" not in piece and not piece.startswith(INPUT_LIST_MARK):
            out[-1] = f"{out[-1]},{piece}"
        else:
            out.append(piece)
    return out


def idc_selections(text: str) -> tuple[idc.IdcSelection, ...]:
    """The ``idc://`` entries of INPUT, resolved through the IDC index (a local file, no network)."""
    return tuple(idc.resolve(e) for e in input_entries(text) if idc.is_idc_url(e))


def indexed_inputs(text: str) -> dict[str, idc.IdcSeries]:
    """Prefix -> index row of every series an ``idc://`` entry of INPUT names.

    The listing turns such a prefix with no object under it into a ``missing_objects`` record
    instead of failing the build: the index, not the user, named it.
    """
    return {
        series.prefix(sel.query.protocol): series for sel in idc_selections(text) for series in sel.series
    }


def clean_input_entry(entry: str, where: str) -> str:
    """One prefix or object URL as written -> the URL to list.

    Whitespace and a trailing ``*`` or ``/*`` (as in IDC's ``series_aws_url``) are dropped, then
    trailing slashes. Any other wildcard is refused: the build lists prefixes, it does not glob.
    """
    url = entry.strip()
    if url.endswith("*"):
        url = url[:-1]
    if any(c in url for c in "*?["):
        raise ConfigError(
            f"{where}: {entry!r} has a wildcard; only a trailing '*' or '/*' is accepted "
            "(name a prefix, or list the prefixes in an @file)"
        )
    if "://" in url:
        scheme, _, rest = url.partition("://")
        rest = rest.rstrip("/")
        if not rest:
            raise ConfigError(f"{where}: {entry!r} names no bucket or path")
        return f"{scheme}://{rest}"
    return url.rstrip("/") or url


def parse_input_list(text: str, source: str) -> list[str]:
    """The entries of an input list file: one prefix or object URL per line.

    Blank lines are skipped; ``#`` at the start of a line or after whitespace starts a comment.
    ``source`` names the file in error messages (with the line number).
    """
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.strip()
        if body.startswith("#"):
            continue
        cut = min((i for i in (body.find(" #"), body.find("\t#")) if i >= 0), default=-1)
        body = (body[:cut] if cut >= 0 else body).strip()
        if not body:
            continue
        if body.startswith(INPUT_LIST_MARK):
            raise ConfigError(f"{source} line {number}: {body!r}: a list file cannot name another list")
        out.append(clean_input_entry(body, f"{source} line {number}"))
    return out


def read_input_list(url: str, storage_options: dict[str, Any]) -> list[str]:
    """Read and parse one ``@URL`` list file (local, gs://, s3://, any fsspec URL)."""
    fs, path = storage.filesystem(url, storage_options)
    try:
        data = fs.cat_file(path)
    except OSError as e:
        raise ConfigError(f"cannot read the input list {url!r}: {type(e).__name__}: {e}") from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"the input list {url!r} is not UTF-8 text: {e}") from e
    return parse_input_list(text, url)


def resolve_inputs(text: str, storage_options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """INPUT -> the prefixes and object URLs the build lists, in a deterministic order.

    Reads every ``@URL`` list file (remote ones with ``storage_options``, as --label_map),
    expands every ``idc://`` entry into its series' prefixes (:mod:`hcc_shards.idc`), cleans each entry (:func:`clean_input_entry`), drops duplicates and entries inside another
    entry (an object under a listed prefix, a prefix under another), and sorts the rest. Entries
    must share one protocol (the storage options apply to all). Local entries must exist; remote
    ones are checked by the listing step, where the workers' credentials apply.
    """
    storage_options = storage_options or {}
    entries: list[str] = []
    lists: list[str] = []
    for entry in input_entries(text):
        if entry.startswith(INPUT_LIST_MARK):
            lists.append(entry[1:].strip())
        elif idc.is_idc_url(entry):
            entries.extend(idc.resolve(entry).prefixes())
        else:
            entries.append(clean_input_entry(entry, "INPUT"))
    if not entries and not lists:
        raise ConfigError("INPUT is empty; name a prefix, an object URL or an @list file")
    for url in lists:
        if not url:
            raise ConfigError("INPUT has an '@' without a list file URL after it")
        found = read_input_list(url, storage_options if "://" in url else {})
        if not found:
            raise ConfigError(f"the input list {url!r} names no prefix (only blank lines or comments)")
        entries.extend(found)
    protocols = {storage.protocol_of(e) for e in entries}
    if len(protocols) > 1:
        examples = {storage.protocol_of(e): e for e in entries}
        raise ConfigError(
            "INPUT mixes storage protocols "
            + ", ".join(f"{p} ({examples[p]!r})" for p in sorted(protocols))
            + "; build one protocol at a time (the storage options apply to every entry)"
        )
    keyed = sorted({_input_key(e): e for e in entries}.items())
    kept: dict[str, str] = {}
    for key, entry in keyed:
        parts = key.split("/")
        if any("/".join(parts[:i]) in kept for i in range(1, len(parts))):
            continue  # inside an entry already kept
        kept[key] = entry
    if storage.protocol_of(next(iter(kept.values()))) == "file":
        missing = [e for k, e in kept.items() if not os.path.exists(k)]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ConfigError(f"input {shown}{more} does not exist; expected a folder or file of DICOM")
    return tuple(kept.values())


def _input_key(entry: str) -> str:
    """Comparable path of an entry: absolute path for local ones, ``bucket/path`` for the others."""
    if storage.protocol_of(entry) == "file":
        local = entry.removeprefix("file://")
        return os.path.abspath(os.path.expanduser(local))
    return entry.partition("://")[2]


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

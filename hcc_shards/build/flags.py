"""The build's flags, declared once: read by ``hcc-shards build`` and ``hcc-shards plan``, by Beam's
pipeline options and by the Spark entry point.

Each flag has one name in snake case (``--label_map``), the form engines receive and Beam's option
classes parse, and the same name in kebab case (``--label-map``) for people. :func:`to_argv` turns
parsed values back into the snake-case flags an engine's argv carries.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hcc_shards.config import PHASE_OPTIONS
from hcc_shards.errors import UnknownFlagError
from hcc_shards.format import CLINICAL_FILE, FEATURES_FILE, LATEST_FILE

PSEUDONYMIZE_KEY_ENV = "HCC_SHARDS_PSEUDONYMIZE_KEY"
"""Environment variable holding the key for --pseudonymize (keeps the key out of process lists)."""

DEFAULT_LISTING_SHARDS = 16
"""Parallel listing tasks; on Dask and Spark also the number of partitions of every later stage."""


class JoinRepeated(argparse.Action):
    """``--input A --input B`` -> ``"A,B"``: INPUT stays one string everywhere (template parameters,
    the options Dataflow hands its workers), and a comma list means the same as repeated flags."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        prior = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{prior},{values}" if prior else values)


@dataclass(frozen=True)
class Flag:
    """One flag of the build."""

    name: str
    """Snake-case name without dashes; also the attribute it parses into."""
    help: str
    options: dict[str, Any] = field(default_factory=dict)
    """argparse keywords besides the help (type, default, action, choices, metavar)."""
    aliases: tuple[str, ...] = ()
    """Older or shorter names that mean the same (``--config`` for ``--build_config``)."""
    shown: bool = True
    """Listed in ``hcc-shards build --help`` (engine plumbing is accepted but not listed)."""
    plan: bool = True
    """Also a flag of ``hcc-shards plan`` (it reads the input as the build does)."""

    @property
    def default(self) -> Any:
        if self.options.get("action") == "store_true":
            return False
        return self.options.get("default")

    def spellings(self) -> list[str]:
        names = [self.name, *self.aliases]
        out = []
        for n in names:
            for form in (n, n.replace("_", "-")):
                if f"--{form}" not in out:
                    out.append(f"--{form}")
        return out


FLAGS: tuple[Flag, ...] = (
    Flag(
        "input",
        "DICOM to build: a prefix or object URL (gs://, s3://, a local path); several, comma-separated or "
        "with --input repeated; '@URL' of a text file with one prefix or object URL per line (# comments "
        "and blank lines ignored, a trailing '/*' tolerated); idc://COLLECTION[?filters]. See docs/RUNNERS.md.",
        {"action": JoinRepeated},
        shown=False,
        plan=False,
    ),
    Flag("output", "URL of the dataset to write (gs://, s3://, a local path).", shown=False, plan=False),
    Flag(
        "spacing",
        "Target spacing 'z,y,x' in mm, or 'auto' (median of the cohort with nnU-Net's anisotropy rule); the "
        "default is auto unless --build_config sets target_spacing.",
        {"metavar": "auto|Z,Y,X"},
    ),
    Flag(
        "label_map",
        "JSON file mapping segment label text or 'SCHEME:code' to a label name or value "
        '({"codes": {...}, "synonyms": {...}}); entries override the defaults.',
        {"metavar": "FILE"},
    ),
    Flag(
        "seed",
        "Seed of the patient-level split and of foreground sampling (default 0).",
        {"type": int},
        aliases=("split_seed",),
    ),
    Flag(
        "limit",
        "Build at most this many cases (the first by case key).",
        {"type": int, "default": 0},
        plan=False,
    ),
    Flag(
        "annotation_sources",
        "Comma-separated annotation sources to build: manual, ai, ai_corrected, unknown (default: all; "
        "docs/FORMAT.md 'Annotation source').",
        {"metavar": "LIST"},
    ),
    Flag(
        "storage_options",
        "JSON fsspec storage options for input and output (e.g. endpoint_url, token).",
        {"default": "", "metavar": "JSON"},
    ),
    Flag(
        "input_storage_options",
        "JSON storage options for the input only.",
        {"default": "", "metavar": "JSON"},
    ),
    Flag(
        "output_storage_options",
        "JSON storage options for the output only.",
        {"default": "", "metavar": "JSON"},
        plan=False,
    ),
    Flag(
        "build_config",
        "JSON file of BuildConfig fields (see hcc_shards.config); flags given here override it.",
        {"metavar": "FILE"},
        aliases=("config",),
    ),
    Flag(
        "pseudonymize",
        f"Replace patient and study identifiers by a keyed hash; the key is read from ${PSEUDONYMIZE_KEY_ENV}.",
        {"action": "store_true"},
    ),
    Flag(
        "pseudonymize_key",
        f"The pseudonymization key itself (visible in process lists; prefer --pseudonymize and "
        f"${PSEUDONYMIZE_KEY_ENV}).",
        shown=False,
    ),
    Flag(
        "listing_shards",
        "Number of parallel listing tasks over the input's top-level prefixes.",
        {"type": int, "default": DEFAULT_LISTING_SHARDS},
    ),
    Flag(
        "target_join",
        "How cases receive the resolved target on Beam: a side input, or a grouped join (used on Dask).",
        {"choices": ("side_input", "grouped"), "default": "side_input"},
        shown=False,
        plan=False,
    ),
    Flag(
        "spread_inputs",
        "Redistribute listing tasks and files with a GroupByKey before indexing on Beam (off on Dask, "
        "where every listing task already is its own partition).",
        {"choices": ("true", "false"), "default": "true"},
        shown=False,
        plan=False,
    ),
    Flag(
        "allow_empty",
        f"Commit (and move {LATEST_FILE} to) a version even when the build found no case to write.",
        {"action": "store_true"},
        plan=False,
    ),
    Flag(
        "lock_wait",
        "Seconds to wait when another build holds OUTPUT's lease (default 0: stop at once, exit 7).",
        {"type": float, "default": 0.0, "metavar": "SECONDS"},
        plan=False,
    ),
    Flag(
        "clinical",
        "Clinical table (CSV, TSV, XLSX or Parquet, any fsspec URL) joined per patient into "
        f"{CLINICAL_FILE}; problems are reported, never fatal.",
        {"metavar": "FILE"},
        plan=False,
    ),
    Flag(
        "clinical_key",
        "Join column of --clinical (default: the first of PatientID, ID, TCIA_ID present).",
        {"metavar": "COLUMN"},
        plan=False,
    ),
    Flag(
        "stratify_by",
        "Clinical (or manifest) column the patient-level split is stratified by; continuous columns in "
        "quartiles.",
        {"metavar": "COLUMN"},
        plan=False,
    ),
    Flag("folds", "Cross-validation folds (manifest column 'fold'; 0: none).", {"type": int}, plan=False),
    Flag(
        "split_file",
        "Splits from a file in nnU-Net's splits_final.json form (a list of {train, val} per fold, case or "
        "patient ids) instead of the built-in ones.",
        {"metavar": "FILE"},
        plan=False,
    ),
    Flag(
        "features",
        f"Compute radiomics features per case and label ({FEATURES_FILE}, docs/FEATURES.md).",
        {"action": "store_true"},
        plan=False,
    ),
    Flag(
        "phases",
        "Contrast phases as channels: 'all' stores the study's other CT acquisitions (same frame of "
        "reference, no registration) resampled onto each annotated image, each with its phase and "
        "confidence (docs/PHASES.md); 'none' (default) the annotated image only.",
        {"choices": PHASE_OPTIONS, "default": "none"},
        plan=False,
    ),
    Flag(
        "progress_dir",
        "Local directory where workers report progress (set by the launcher on local engines).",
        shown=False,
        plan=False,
    ),
)
"""Every flag of the build, in the order help lists them."""

FLAG_BY_NAME = {f.name: f for f in FLAGS}


def add_build_flags(
    parser: argparse.ArgumentParser | Any, *, people: bool = False, plan: bool = False
) -> None:
    """Declare the build's flags on ``parser``.

    ``people``: the kebab-case spelling is listed first and plumbing flags are hidden (the CLI);
    otherwise the snake-case one (engines, Beam's options). ``plan``: only the flags ``hcc-shards plan``
    takes. INPUT and OUTPUT are positional in the CLI, so they are left out when ``people`` is set.
    """
    for flag in FLAGS:
        if (plan and not flag.plan) or (people and flag.name in ("input", "output")):
            continue
        names = flag.spellings()
        if people:
            names = sorted(names, key=lambda n: "_" in n)
        hidden = people and not flag.shown
        parser.add_argument(
            *names, dest=flag.name, help=argparse.SUPPRESS if hidden else flag.help, **flag.options
        )


def to_argv(values: argparse.Namespace, *, skip: Sequence[str] = ()) -> list[str]:
    """The snake-case flags of every build flag in ``values`` that differs from its default."""
    out = []
    for flag in FLAGS:
        if flag.name in skip or not hasattr(values, flag.name):
            continue
        value = getattr(values, flag.name)
        if value is None or value == flag.default:
            continue
        out.append(f"--{flag.name}" if value is True else f"--{flag.name}={value}")
    return out


def parse_build_flags(argv: Sequence[str], prog: str = "hcc-shards build") -> argparse.Namespace:
    """The build's flags from an engine argv; any other flag is an :class:`UnknownFlagError`."""
    parser = argparse.ArgumentParser(prog=prog, add_help=False, allow_abbrev=False)
    add_build_flags(parser)
    values, rest = parser.parse_known_args(list(argv))
    unknown = [a.split("=", 1)[0] for a in rest if a.startswith("-")]
    if unknown or rest:
        raise UnknownFlagError(
            f"unknown flag{'s' if len(unknown) > 1 else ''} {', '.join(unknown or rest)} for {prog} "
            "(check the spelling: hcc-shards build --help, docs/RUNNERS.md)"
        )
    return values

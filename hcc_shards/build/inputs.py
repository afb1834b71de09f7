"""INPUT, one grammar for every command and engine: prefixes and object URLs (gs://, s3://, local),
comma lists, ``@URL`` list files and ``idc://`` selections of the IDC index (docs/RUNNERS.md "Inputs").
"""

from __future__ import annotations

import os
from typing import Any

from hcc_shards import idc, storage
from hcc_shards.errors import ConfigError

INPUT_LIST_MARK = "@"
"""An INPUT entry ``@URL`` names a text file of prefixes or object URLs, one per line."""


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

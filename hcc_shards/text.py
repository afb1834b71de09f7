"""Header text made safe to show: one definition of each escape, used wherever DICOM text is printed.

DICOM headers are written by whoever made the file. Any of their text (PatientID, descriptions,
segment labels, file names, exception messages that quote them) can carry control bytes, Markdown
table syntax or HTML. Nothing from a header is shown raw: the dataset card, logs and the terminal go
through these functions. numpy-free and import-light (the reader may use it).
"""

from __future__ import annotations

import html

__all__ = ["MAX_SHOWN", "md_cell", "printable", "shown", "storable"]

MAX_SHOWN = 300
"""Characters of one header value shown at most (longer values end with an ellipsis)."""


def printable(text: object, *, limit: int | None = MAX_SHOWN) -> str:
    """``text`` with every control or unprintable character written as an escape (``\\n``, ``\\x1b``).

    Lone surrogates (file names that were not valid UTF-8, decoded with ``surrogateescape``) are
    escaped too, so the result always encodes as UTF-8.
    """
    s = text if isinstance(text, str) else str(text)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    out = []
    for ch in s:
        code = ord(ch)
        if ch.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def shown(text: object, *, limit: int | None = MAX_SHOWN) -> str:
    """Header text for a log line or the terminal: :func:`printable`, so no byte can move the cursor."""
    return printable(text, limit=limit)


# Intraword ``_`` and ``*`` only restyle text; these can end a cell, open code or make a link.
_MD_SPECIAL = str.maketrans({"|": "\\|", "`": "\\`", "\\": "\\\\", "[": "\\[", "]": "\\]"})


def md_cell(text: object, *, limit: int | None = MAX_SHOWN) -> str:
    """Header text for a Markdown table cell: control characters escaped, HTML special characters
    as entities, and the Markdown characters that end a cell, open code or make a link (``|``, backticks,
    brackets) backslash-escaped. The result is one line and renders as the literal text."""
    return html.escape(printable(text, limit=limit).translate(_MD_SPECIAL), quote=True)


def storable(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a name that was not valid UTF-8 (lone surrogates from
    ``surrogateescape``) written as ``\\xNN``; any other text is returned unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

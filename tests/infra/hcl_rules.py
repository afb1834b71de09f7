"""Our own rules for the Terraform in terraform/, checked on its parsed HCL.

checkov covers the generic Google Cloud checks; these are the project's own, stricter ones:

- ``public-principal``: no IAM grant to ``allUsers`` or ``allAuthenticatedUsers``, anywhere.
- ``primitive-role``: no primitive role (``roles/owner``, ``roles/editor``, ``roles/viewer``), anywhere.
- ``bucket-public-access-prevention``: every ``google_storage_bucket`` sets
  ``public_access_prevention = "enforced"`` literally (not through a variable that could flip it).
- ``bucket-uniform-access``: every ``google_storage_bucket`` sets ``uniform_bucket_level_access = true``
  literally.
- ``project-role``: project-level grants only give the roles a runtime identity cannot work without
  (``PROJECT_ROLES_ALLOWED``); everything else is granted on the bucket, repository or account.
- ``authoritative-iam``: no authoritative or above-project IAM resources (``google_project_iam_policy``,
  ``google_project_iam_binding``, ``google_folder_iam_*``, ``google_organization_iam_*``), which would
  silently remove grants made by others.

The parser is the ``hcl2`` module (python-hcl2's API; in the infrastructure-check environment it is
bc-python-hcl2, the fork checkov ships). It is imported when first needed, so this module can be
imported without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PUBLIC_PRINCIPALS = frozenset({"allUsers", "allAuthenticatedUsers"})
"""IAM principals that mean 'anyone'."""

PRIMITIVE_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
"""Basic roles that grant far more than any workload needs."""

PROJECT_ROLES_ALLOWED = frozenset({"roles/dataflow.worker", "roles/dataproc.worker"})
"""The only roles that may be granted at project level: each is required by its runtime."""

AUTHORITATIVE_IAM = re.compile(r"^google_(project_iam_(policy|binding)|folder_iam_\w+|organization_iam_\w+)$")
"""Resource types that replace IAM set by others, or act above the project."""

PROJECT_IAM = frozenset({"google_project_iam_member", "google_project_iam_binding"})

RULES = (
    "public-principal",
    "primitive-role",
    "bucket-public-access-prevention",
    "bucket-uniform-access",
    "project-role",
    "authoritative-iam",
)
"""Every rule id this module can report."""


@dataclass(frozen=True)
class Block:
    """One ``resource``, ``data``, ``locals``, ``variable`` or ``output`` block of a .tf file."""

    file: str
    """File name the block comes from."""
    kind: str
    """Top-level block kind: resource, data, locals, variable, output, ..."""
    type: str
    """Resource or data source type (``google_storage_bucket``); empty for other kinds."""
    name: str
    """Block label (resource name, variable name); empty for locals."""
    body: dict[str, Any]
    """Attributes and nested blocks, with python-hcl2's one-element value lists unwrapped."""
    line: int
    """First line of the block in its file (0 when the parser does not say)."""

    @property
    def address(self) -> str:
        """Terraform-style address: ``google_storage_bucket.output``, ``data.x.y``, ``var.z``."""
        if self.kind == "resource":
            return f"{self.type}.{self.name}"
        if self.kind == "data":
            return f"data.{self.type}.{self.name}"
        if self.kind == "variable":
            return f"var.{self.name}"
        return f"{self.kind}.{self.name}" if self.name else self.kind


@dataclass(frozen=True)
class Violation:
    """A broken rule, with where it is."""

    rule: str
    """One of :data:`RULES`."""
    file: str
    """File name."""
    address: str
    """Terraform address of the block."""
    line: int
    """First line of the block."""
    message: str
    """What is wrong and what to do instead."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.address}: [{self.rule}] {self.message}"


class HclParseError(ValueError):
    """A .tf file that the HCL parser rejects."""


def parse_text(text: str, file: str = "<text>") -> list[Block]:
    """Parse one .tf file's text into blocks."""
    import hcl2  # imported here: only the infrastructure-check environment has it

    try:
        document = hcl2.loads(text)
    except Exception as e:  # the parser raises lark errors of several kinds
        raise HclParseError(f"{file}: not valid HCL ({type(e).__name__}: {e})") from e
    return list(_blocks(document, file))


def parse_dir(directory: Path) -> list[Block]:
    """Parse every ``*.tf`` file directly inside ``directory`` (one Terraform module)."""
    files = sorted(Path(directory).glob("*.tf"))
    if not files:
        raise FileNotFoundError(f"no *.tf files in {directory}; expected a Terraform module there")
    blocks: list[Block] = []
    for path in files:
        blocks.extend(parse_text(path.read_text(encoding="utf-8"), path.name))
    return blocks


def check_blocks(blocks: list[Block]) -> list[Violation]:
    """Every rule violation in ``blocks``, in file and line order."""
    found: list[Violation] = []
    for block in blocks:
        found.extend(_check_block(block))
    return sorted(found, key=lambda v: (v.file, v.line, v.rule))


def check_dir(directory: Path) -> list[Violation]:
    return check_blocks(parse_dir(directory))


def check_text(text: str, file: str = "snippet.tf") -> list[Violation]:
    return check_blocks(parse_text(text, file))


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def _check_block(block: Block) -> Iterator[Violation]:
    def violation(rule: str, message: str) -> Violation:
        return Violation(rule, block.file, block.address, block.line, message)

    for value in _strings(block.body):
        token = value.strip()
        if token in PUBLIC_PRINCIPALS:
            yield violation(
                "public-principal",
                f"grants to {token!r}, which is anyone on the internet; grant to a named user, group "
                "or service account instead",
            )
        if token in PRIMITIVE_ROLES:
            yield violation(
                "primitive-role",
                f"uses the primitive role {token!r}; grant a predefined role on the one resource that "
                "needs it (e.g. roles/storage.objectViewer on a bucket)",
            )

    if block.kind != "resource":
        return

    if block.type == "google_storage_bucket":
        pap = block.body.get("public_access_prevention")
        if pap != "enforced":
            yield violation(
                "bucket-public-access-prevention",
                f'public_access_prevention must be the literal "enforced", got {pap!r}',
            )
        ubla = block.body.get("uniform_bucket_level_access")
        if ubla is not True:
            yield violation(
                "bucket-uniform-access",
                f"uniform_bucket_level_access must be the literal true, got {ubla!r}",
            )

    if AUTHORITATIVE_IAM.match(block.type):
        yield violation(
            "authoritative-iam",
            f"{block.type} replaces or reaches beyond project IAM set by others; use "
            "google_project_iam_member, or a grant on the resource itself",
        )

    if block.type in PROJECT_IAM:
        role = block.body.get("role")
        if role not in PROJECT_ROLES_ALLOWED:
            yield violation(
                "project-role",
                f"grants {role!r} on the whole project; only {sorted(PROJECT_ROLES_ALLOWED)} may be "
                "granted there, everything else on the bucket, repository or service account",
            )


# --------------------------------------------------------------------------------------------
# Parsed-HCL helpers
# --------------------------------------------------------------------------------------------


def _blocks(document: dict[str, Any], file: str) -> Iterator[Block]:
    for kind, entries in document.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                continue
            if kind in ("resource", "data"):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        yield _block(file, kind, rtype, name, body)
            elif kind in ("variable", "output", "module", "provider"):
                for name, body in entry.items():
                    yield _block(file, kind, "", name, body)
            else:  # locals, terraform
                yield _block(file, kind, "", "", entry)


def _block(file: str, kind: str, rtype: str, name: str, body: Any) -> Block:
    body = body if isinstance(body, dict) else {}
    line = body.get("__start_line__", 0)
    clean = {k: _unwrap(v) for k, v in body.items() if not k.startswith("__")}
    return Block(file=file, kind=kind, type=rtype, name=name, body=clean, line=int(line or 0))


def _unwrap(value: Any) -> Any:
    """python-hcl2 wraps attribute values in one-element lists; unwrap them, keep real lists."""
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict):
        return _unwrap(value[0])
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items() if not k.startswith("__")}
    return value


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a parsed value, including those inside ${...} interpolations."""
    if isinstance(value, str):
        yield value
        # "${["allUsers"]}" and similar: the quoted literals inside an expression.
        yield from re.findall(r'"([^"\\]*)"', value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)

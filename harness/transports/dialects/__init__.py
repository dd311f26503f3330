"""Instrument command dialects: one YAML file per instrument family, read by drivers and by the
virtual instruments alike, so a new family is a new data file, not new code.

A dialect file (``<family>.yaml`` beside this module) names its sources and, per role it serves,
the command of each operation as a SCPI header *pattern* with ``{placeholders}``::

    set_voltage:
      write: "SOURce:VOLTage[:LEVel][:IMMediate][:AMPLitude]:AC {value}"
      source: svp
      verified: true

Patterns use SCPI's own notation: the uppercase part of a node is its short form, ``[...]``
marks an optional node, ``<n>`` a numeric suffix (``ITEM<n>``). A driver sends the short form
(:meth:`Operation.render`: optional nodes dropped, ``SOUR:VOLT:AC 240.0``); a virtual instrument
accepts every spelling of the pattern (virtual_devices.endpoints.scpi_server.expand_header).

Every operation says where it comes from (``source``, a key of the file's ``sources``) and
whether a public document confirms it for this family (``verified``); ``note`` says what is
assumed. Nothing in code restates a command string.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

FOLDER = Path(__file__).resolve().parent
GENERIC = "scpi"
"""The harness's own generic SCPI dialect, the default ``driver:`` of every instrument."""

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class DialectError(ValueError):
    """A dialect file is missing, malformed, or lacks an operation a driver needs."""


def short_form(pattern: str) -> str:
    """The short spelling of a header pattern: ``[SOURce:]VOLTage:AC`` -> ``VOLT:AC``.

    A leading colon is kept (some families document it on every header); ``<n>`` becomes the
    ``{n}`` placeholder to be filled by :meth:`Operation.render`.
    """
    query = pattern.endswith("?")
    body = pattern[:-1] if query else pattern
    root = body.startswith(":")
    body = body.lstrip(":").replace("[:", ":[").replace(":]", "]:")
    nodes = []
    for node in body.split(":"):
        if node.startswith("[") and node.endswith("]"):
            continue
        suffixed = node.endswith("<n>")
        name = node[:-3] if suffixed else node
        short = "".join(itertools.takewhile(lambda c: not c.islower(), name)) or name
        nodes.append(short.upper() + ("{n}" if suffixed else ""))
    return (":" if root else "") + ":".join(nodes) + ("?" if query else "")


@dataclass(frozen=True)
class Operation:
    """One operation of a role: a command (``write``) or a query, with its provenance."""

    name: str
    template: str
    query: bool
    source: str = ""
    verified: bool = False
    note: str = ""

    @property
    def pattern(self) -> str:
        """The header pattern (what a virtual instrument registers)."""
        return self.template.split(" ", 1)[0]

    @property
    def parameters(self) -> list[str]:
        """Placeholder names, in order (``n`` for a numeric suffix included)."""
        names = ["n"] if "<n>" in self.pattern else []
        return names + _PLACEHOLDER.findall(self.template.partition(" ")[2])

    def render(self, **values: Any) -> str:
        """The command line a driver sends, e.g. ``render(value=240.0)`` -> ``VOLT:AC 240.0``."""
        header, _, args = self.template.partition(" ")
        text = short_form(header) + (f" {args}" if args else "")
        try:
            return text.format(**{k: _text(v) for k, v in values.items()})
        except KeyError as exc:
            raise DialectError(
                f"operation {self.name!r} needs parameter {exc.args[0]!r}: {self.template!r}"
            ) from None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)  # exact: the float the caller asked for, no precision lost on the wire
    return str(value)


@dataclass(frozen=True)
class RoleDialect:
    """The part of a dialect that serves one role."""

    family: str
    role: str
    operations: Mapping[str, Operation]
    setup: tuple[Operation, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Role-specific data (analyzer functions and units, boolean spellings ...)."""

    def op(self, name: str) -> Operation:
        try:
            return self.operations[name]
        except KeyError:
            raise DialectError(
                f"dialect {self.family!r} has no {self.role} operation {name!r}; "
                f"it defines: {', '.join(sorted(self.operations))}"
            ) from None

    def has(self, name: str) -> bool:
        return name in self.operations

    def setting(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)


@dataclass(frozen=True)
class Dialect:
    """A family's command dialect as its data file gives it."""

    family: str
    title: str
    error_query: Operation
    sources: Mapping[str, str]
    roles: Mapping[str, RoleDialect]
    path: Path

    def role(self, role: str) -> RoleDialect:
        try:
            return self.roles[role]
        except KeyError:
            served = ", ".join(sorted(self.roles)) or "none"
            raise DialectError(
                f"dialect {self.family!r} ({self.path.name}) does not serve the {role} role; "
                f"it serves: {served}"
            ) from None

    def unverified(self) -> list[str]:
        """``role.operation`` of every command no public document confirms for this family."""
        out = [] if self.error_query.verified else ["error_query"]
        for role in self.roles.values():
            for op in (*role.setup, *role.operations.values()):
                if not op.verified:
                    out.append(f"{role.role}.{op.name}")
        return out


def available() -> list[str]:
    """Family names with a data file here."""
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def _operation(name: str, raw: Any, where: str) -> Operation:
    if isinstance(raw, str):
        raw = {"write": raw}
    if not isinstance(raw, dict):
        raise DialectError(f"{where}: operation {name!r} must be a mapping")
    kinds = [k for k in ("write", "query") if k in raw]
    if len(kinds) != 1:
        raise DialectError(f"{where}: operation {name!r} needs exactly one of write/query")
    template = str(raw[kinds[0]])
    if kinds[0] == "query" and not template.split(" ", 1)[0].endswith("?"):
        raise DialectError(f"{where}: query {name!r} does not end in '?': {template!r}")
    return Operation(
        name=name,
        template=template,
        query=kinds[0] == "query",
        source=str(raw.get("source", "")),
        verified=bool(raw.get("verified", False)),
        note=str(raw.get("note", "")),
    )


@cache
def load_dialect(family: str) -> Dialect:
    """The dialect of ``family`` (the instrument's ``driver:`` name in the site file)."""
    path = FOLDER / f"{family}.yaml"
    if not path.is_file():
        raise DialectError(f"no instrument dialect {family!r}; available: {', '.join(available())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("roles"), dict):
        raise DialectError(f"{where}: expected a mapping with 'family' and 'roles'")
    if data.get("family") != family:
        raise DialectError(f"{where}: 'family' must be {family!r} (the file's name)")
    sources = {str(k): str(v) for k, v in (data.get("sources") or {}).items()}
    roles: dict[str, RoleDialect] = {}
    for role, body in data["roles"].items():
        if not isinstance(body, dict) or not isinstance(body.get("operations"), dict):
            raise DialectError(f"{where}: role {role!r} needs 'operations'")
        ops = {n: _operation(n, raw, where) for n, raw in body["operations"].items()}
        setup = tuple(
            _operation(f"setup[{i}]", raw, where) for i, raw in enumerate(body.get("setup") or [])
        )
        for op in (*ops.values(), *setup):
            if op.source and op.source.split()[0] not in sources:
                raise DialectError(f"{where}: {role}.{op.name} cites unknown source {op.source!r}")
        settings = {k: v for k, v in body.items() if k not in ("operations", "setup")}
        roles[str(role)] = RoleDialect(family, str(role), ops, setup, settings)
    return Dialect(
        family=family,
        title=str(data.get("title", family)),
        error_query=_operation("error_query", data.get("error_query", {}), where),
        sources=sources,
        roles=roles,
        path=path,
    )

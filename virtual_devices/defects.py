"""Defects a virtual device can be given (DESIGN section 6); the catalogue is data/defects/*.yaml.

A defect changes a device's behaviour, never a verdict: the harness must find it by measuring.
Each kind names the role it applies to, the unit of its ``value`` and any extra keys it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import ConfigError, ConfigErrors
from harness.config.site import Site
from harness.config.units import UnitError, to_unit


@dataclass(frozen=True)
class DefectKind:
    role: str
    unit: str
    description: str
    keys: tuple[str, ...] = ()
    switch: bool = False
    """The value is 1 (on) or 0 (off), nothing else; checked here, once, for every such kind."""


DEFECTS_DIR = Path(__file__).parent / "data" / "defects"
SITE = "site"
"""The node name of a site-wide device in a defect's ``device`` (``site.ems``)."""
SITE_ROLES = frozenset({"ems", "meter"})
"""Roles of devices the whole site shares, named ``site.<role>``."""


@lru_cache(maxsize=1)
def catalogue() -> dict[str, DefectKind]:
    """Every defect kind of every file in data/defects/."""
    out: dict[str, DefectKind] = {}
    for path in sorted(DEFECTS_DIR.glob("*.yaml")):
        for kind, body in yaml.safe_load(path.read_text("utf-8"))["defects"].items():
            if kind in out:
                raise ValueError(f"defect kind {kind} is defined twice (again in {path.name})")
            out[kind] = DefectKind(
                body["role"],
                body["unit"],
                " ".join(body["description"].split()),
                tuple(body.get("keys", ())),
                bool(body.get("switch", False)),
            )
    return out


@dataclass(frozen=True)
class AppliedDefect:
    node: str
    role: str
    kind: str
    value: float
    extra: dict[str, Any] = field(default_factory=dict)


def parse_defects(site: Site) -> list[AppliedDefect]:
    """Validate the site's ``defects:`` against the catalogue; errors name the entry."""
    errors: list[ConfigError] = []
    out: list[AppliedDefect] = []
    nodes = {n.name for n in site.spec.nodes}
    for i, d in enumerate(site.spec.defects):
        where = f"defects[{i}]"

        node, _, role = d.device.partition(".")
        kind = catalogue().get(d.kind)
        if kind is None:
            known = ", ".join(sorted(catalogue()))
            errors.append(
                _err(
                    site,
                    i,
                    where + ".kind",
                    f"unknown defect {d.kind!r}; expected one of: {known}",
                    "kind",
                )
            )
            continue
        if kind.role in SITE_ROLES:
            if d.device != f"{SITE}.{kind.role}":
                errors.append(
                    _err(
                        site,
                        i,
                        where + ".device",
                        f"{d.kind} applies to the site's {kind.role}: device {SITE}.{kind.role}",
                        "device",
                    )
                )
                continue
        elif node not in nodes:
            errors.append(
                _err(site, i, where + ".device", f"no node {node!r} in this site", "device")
            )
            continue
        if role != kind.role:
            errors.append(
                _err(
                    site,
                    i,
                    where + ".device",
                    f"{d.kind} applies to a {kind.role}, not a {role}",
                    "device",
                )
            )
            continue
        extra = dict(d.model_extra or {})
        missing = [k for k in kind.keys if k not in extra]
        if missing:
            errors.append(_err(site, i, where, f"{d.kind} needs {', '.join(missing)}"))
            continue
        try:
            value = to_unit(d.value, kind.unit, require_unit=kind.unit not in ("", "1"))
        except UnitError as exc:
            errors.append(_err(site, i, where + ".value", str(exc), "value"))
            continue
        if kind.switch and value not in (0.0, 1.0):
            message = f"{d.kind}: value is 1 (on) or 0 (off), not {value:g}"
            errors.append(_err(site, i, where + ".value", message, "value"))
            continue
        out.append(AppliedDefect(node, role, d.kind, value, extra))
    if errors:
        raise ConfigErrors(errors)
    return out


def _err(site: Site, index: int, field_name: str, message: str, *loc: str) -> ConfigError:
    return ConfigError(site.path, site.line("defects", index, *loc), field_name, message)


def defects_for(defects: list[AppliedDefect], node: str, role: str) -> dict[str, AppliedDefect]:
    """The defects given to one device, by kind."""
    return {d.kind: d for d in defects if d.node == node and d.role == role}

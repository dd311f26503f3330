"""The catalogue of defects a virtual device can be given (DESIGN section 6), in one place.

A defect changes a device's behaviour, never a verdict: the harness must find it by measuring.
Each kind names the role it applies to, the unit of its ``value`` and any extra keys it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config.errors import ConfigError, ConfigErrors
from harness.config.site import Site
from harness.config.units import UnitError, to_unit


@dataclass(frozen=True)
class DefectKind:
    role: str
    unit: str
    description: str
    keys: tuple[str, ...] = ()


CATALOGUE: dict[str, DefectKind] = {
    "anti_islanding_delay": DefectKind(
        "inverter",
        "s",
        "The inverter keeps energizing an island for `value` after it forms, instead of ceasing "
        "within its anti-islanding detection time.",
    ),
    "cycle_time": DefectKind(
        "bms",
        "s",
        "The BMS sends `message` every `value` instead of at the DBC's cycle time.",
        ("message",),
    ),
}


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
        kind = CATALOGUE.get(d.kind)
        if kind is None:
            known = ", ".join(sorted(CATALOGUE))
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
        if node not in nodes:
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
        out.append(AppliedDefect(node, role, d.kind, value, extra))
    if errors:
        raise ConfigErrors(errors)
    return out


def _err(site: Site, index: int, field_name: str, message: str, *loc: str) -> ConfigError:
    return ConfigError(site.path, site.line("defects", index, *loc), field_name, message)

"""Check a site's instruments before anything is connected: each ``driver:`` names a driver of
its role (for SCPI instruments, a dialect file that serves the role), and a relay-stepped load
bank's step map is well formed. ``harness check`` and ``harness run`` report a bad name or map
with the file, line and field, instead of failing later at connection time."""

from __future__ import annotations

from harness.config.errors import ConfigError, ConfigErrors
from harness.config.site import Site
from harness.devices.registry import default_registry
from harness.transports.dialects.relay_bank import StepMapError, is_relay_bank, parse_branches

ROLES = {
    "grid": "grid",
    "analyzer": "analyzer",
    "load_bank": "load_bank",
    "pcc_breaker": "breaker",
    "chamber": "chamber",
    "pv_simulator": "pv_simulator",
}
"""Site field under ``instruments`` -> the role its driver is registered for."""


def check_instruments(site: Site) -> None:
    """Raise :class:`ConfigErrors` naming every unknown driver and malformed step map."""
    registry = default_registry()
    errors: list[ConfigError] = []
    for key, role in ROLES.items():
        cfg = getattr(site.spec.instruments, key)
        if cfg is None:
            continue
        known = registry.drivers(role)
        if cfg.driver not in known:
            errors.append(
                ConfigError(
                    site.path,
                    site.line("instruments", key, "driver"),
                    f"instruments.{key}.driver",
                    f"unknown {role} driver {cfg.driver!r}; expected one of: {', '.join(known)} "
                    "(an SCPI family is a dialect file in harness/transports/dialects/)",
                )
            )
        elif role == "load_bank" and is_relay_bank(cfg.driver):
            errors += _step_map(site, key, cfg)
    if errors:
        raise ConfigErrors(errors)


def _step_map(site: Site, key: str, cfg: object) -> list[ConfigError]:
    options = getattr(cfg, "options", {})
    where: tuple[str | int, ...] = ("instruments", key, "options")
    try:
        branches = parse_branches(options, where)
    except StepMapError as exc:
        loc = exc.loc
        line = site.line(*loc) or site.line(*loc[:-1]) or site.line(*where[:2])
        return [ConfigError(site.path, line, ".".join(map(str, loc)), exc.reason)]
    endpoint = getattr(cfg, "endpoint", None)
    if getattr(endpoint, "transport", "") == "virtual":
        return []
    return [
        ConfigError(
            site.path,
            site.line(*where, "branches", name) or site.line(*where),
            f"{'.'.join(map(str, where))}.branches.{name}.resource",
            "missing: the VISA resource of this branch's relay controller",
        )
        for name, branch in branches.items()
        if branch.resource is None
    ]

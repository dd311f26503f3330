"""`harness check`: validate any input file and say what it contains."""

from __future__ import annotations

from pathlib import Path

import cantools

from harness.config.ambiguity import ambiguities
from harness.config.contract import load_contract
from harness.config.errors import ConfigErrors
from harness.config.site import Site, load_site
from harness.config.yamlsrc import load_yaml


def check_dbc(path: Path) -> str:
    """Load a DBC strictly; a malformed one is a ConfigErrors naming the file and line."""
    if not path.is_file():
        raise ConfigErrors.single(path, "file not found")
    try:
        db = cantools.database.load_file(str(path), database_format="dbc", strict=True)
    except Exception as exc:  # cantools raises parser-specific errors with the position inside
        raise ConfigErrors.single(
            path, f"not a valid DBC: {_one_line(exc)}", _line_of(exc)
        ) from None
    assert isinstance(db, cantools.database.can.Database)
    return _dbc_summary(db)


def _dbc_summary(db: cantools.database.can.Database) -> str:
    """What a DBC contains, as a conformance check will see it; warnings on their own lines."""
    messages = db.messages
    senders = sorted({s for m in messages for s in m.senders})
    ext = sum(1 for m in messages if m.is_extended_frame)
    periodic = [m for m in messages if m.cycle_time]
    orders = {s.byte_order for m in messages for s in m.signals}
    no_sender = [m.name for m in messages if not m.senders]
    lines = [
        f"DBC with {len(messages)} messages ({ext} extended), "
        f"{sum(len(m.signals) for m in messages)} signals, "
        f"nodes {', '.join(n.name for n in db.nodes) or '-'}, "
        f"senders {', '.join(senders) or '-'}",
        f"  {len(periodic)} with a cycle time, {len(messages) - len(periodic)} without; "
        f"{sum(1 for m in messages if m.is_multiplexed())} multiplexed; byte order "
        f"{', '.join(sorted(o.replace('_endian', '') for o in orders)) or '-'}",
    ]
    for m in messages:
        lines.append(
            f"  0x{m.frame_id:X}{' (ext)' if m.is_extended_frame else ''} {m.name}: "
            f"{m.length} bytes, {f'{m.cycle_time} ms' if m.cycle_time else 'no cycle time'}, "
            f"sent by {', '.join(m.senders) or 'nobody named'}"
            + (", multiplexed" if m.is_multiplexed() else "")
        )
    if no_sender:
        lines.append(
            f"  warning: {len(no_sender)} message(s) name no sender; a BMS map must list "
            f"the messages the BMS sends ('messages:')"
        )
    for m in messages:
        unranged = [s.name for s in m.signals if s.minimum is None and s.maximum is None]
        if unranged:
            lines.append(
                f"  warning: {m.name}: no declared range for {', '.join(unranged)} "
                f"(their values cannot be checked)"
            )
    return "\n".join(lines)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _line_of(exc: Exception) -> int | None:
    text = str(exc)
    marker = "line "
    if marker in text:
        digits = "".join(ch for ch in text.split(marker, 1)[1][:8] if ch.isdigit())
        return int(digits) if digits else None
    return None


def check_site(path: Path) -> tuple[Site, str]:
    from harness.devices.instrument_check import check_instruments
    from virtual_devices.defects import parse_defects

    site = load_site(path)
    check_instruments(site)  # drivers and dialects by name, relay-bank step maps
    for node in site.spec.nodes:
        check_dbc(site.resolve(node.bms.dbc))
    if site.spec.site.settings is not None:
        load_contract(site.resolve(site.spec.site.settings))
    defects = parse_defects(site)
    summary = (
        f"site '{site.spec.site.name}' ({site.spec.site.topology}), "
        f"{len(site.spec.nodes)} node(s), "
        f"{'virtual' if site.is_virtual else 'live'} endpoints, {len(defects)} defect(s)"
    )
    return site, summary


def check_file(path: Path) -> str:
    if path.suffix.lower() == ".dbc":
        return check_dbc(path)
    data, _ = load_yaml(path)
    if isinstance(data, dict) and ("clauses" in data or "contract" in data or "profile" in data):
        contract = load_contract(path)
        if "contract" in data:  # a profile is a part of contracts, not one to sign
            problems = ambiguities(contract, path)
            if problems:
                raise ConfigErrors(problems)
        return f"contract '{contract.info.id}' with {len(contract.clauses)} clauses"
    if isinstance(data, dict) and ("nodes" in data or "site" in data):
        return check_site(path)[1]
    raise ConfigErrors.single(
        path,
        "not a site, contract, profile or DBC file; "
        "expected 'site:'/'nodes:' or 'contract:'/'clauses:'",
        1,
    )


def check_run_inputs(site_path: Path, contract_path: Path) -> Site:
    """Everything ``harness run`` needs, validated before any device is touched; the site."""
    errors = []
    site: Site | None = None
    try:
        site = check_site(site_path)[0]
    except ConfigErrors as exc:
        errors += exc.errors
    try:
        load_contract(contract_path)
    except ConfigErrors as exc:
        errors += exc.errors
    if errors or site is None:
        raise ConfigErrors(errors)
    return site

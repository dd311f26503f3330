"""Site-file check: devices that name one serial port share one RS-485 line, so they must agree
on its settings and each needs its own unit id (harness/transports/serial_line.py shares the port
at run time; this finds a conflict when the file is loaded, naming the field)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from harness.config.site import ModbusRtuEndpoint, SiteFile
from harness.config.validation import field_path

Loc = tuple[str | int, ...]
LINE_SETTINGS = ("baudrate", "parity")
"""What every device of one line must agree on (a master talks to the line with one setting)."""


def _rtu_endpoints(value: Any, loc: Loc) -> Iterator[tuple[Loc, ModbusRtuEndpoint]]:
    if isinstance(value, ModbusRtuEndpoint):
        yield loc, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _rtu_endpoints(getattr(value, name), (*loc, name))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _rtu_endpoints(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _rtu_endpoints(item, (*loc, str(key)))


def line_conflicts(spec: SiteFile) -> list[tuple[Loc, str]]:
    """(field location, message) for every RTU endpoint that disagrees with the first device
    on its port, or repeats a unit id already on that port."""
    first: dict[str, tuple[Loc, ModbusRtuEndpoint]] = {}
    units: dict[tuple[str, int], Loc] = {}
    out: list[tuple[Loc, str]] = []
    for loc, endpoint in _rtu_endpoints(spec, ()):
        where = field_path(first.get(endpoint.port, (loc, endpoint))[0])
        if endpoint.port not in first:
            first[endpoint.port] = (loc, endpoint)
        else:
            _, ref = first[endpoint.port]
            for name in LINE_SETTINGS:
                mine, theirs = getattr(endpoint, name), getattr(ref, name)
                if mine != theirs:
                    out.append(
                        (
                            (*loc, name),
                            f"serial port {endpoint.port} is one RS-485 line: {name} {mine} "
                            f"here, {theirs} at {where}.{name}",
                        )
                    )
        seen = units.get((endpoint.port, endpoint.unit))
        if seen is not None:
            out.append(
                (
                    (*loc, "unit"),
                    f"unit {endpoint.unit} is already on serial port {endpoint.port} "
                    f"({field_path(seen)}); each device of a line needs its own",
                )
            )
        else:
            units[(endpoint.port, endpoint.unit)] = loc
    return out

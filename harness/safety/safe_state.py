"""The safe state: dispatch zero on every inverter, grid simulator back to nominal.

Driven on a safety trip, on Ctrl-C and on a crash (the session's teardown), and at the end of
every run. It never raises: each step is tried, and what failed is reported, because a safe
state that stops at the first unreachable unit leaves the others unsafe.
"""

from __future__ import annotations

from typing import Any

from harness.devices.absent import is_present
from harness.safety.audit import WriteAudit


def drive_safe(bench: Any, audit: WriteAudit | None = None) -> list[str]:
    """Bring ``bench`` to its safe state; returns one line per step that failed."""
    if audit is not None:
        audit.unblock()  # the safe state's own writes must go out after a trip
    problems: list[str] = []
    for name, node in bench.nodes.items():
        try:
            node.inverter.set_power(0.0)
        except Exception as exc:  # keep going: the next unit must still be made safe
            problems.append(f"{name}.inverter: dispatch zero failed: {exc}")
    if not is_present(bench.grid):
        return problems
    try:
        bench.grid.set_voltage(bench.nominal_voltage)
        bench.grid.set_frequency(bench.nominal_frequency)
    except Exception as exc:
        problems.append(f"grid: back to nominal failed: {exc}")
    return problems

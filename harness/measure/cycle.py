"""Charging and discharging units at a constant power until each is full or empty.

A performance test drives every unit at the contract's rated power until its BMS reports the
SoC band's end (full or empty) or the unit stops delivering by itself (its own reserve, its
BMS's limits at zero): whichever comes first ends that unit's phase, and it is set to 0 W while
the others go on. The energy moved is read from the power analyzer's integrators at the phase's
boundaries, never summed from polls, so how often the phase is polled changes only how far past
the band's end a unit may run (one poll at most), never the energy counted for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Poll = Callable[[], None]
"""Called on every poll of a phase (e.g. to note each BMS's temperature)."""


@dataclass
class Phase:
    """How a phase ended for each unit: ``reason`` is ``soc`` (the band's end reported),
    ``stopped`` (the unit's output fell away by itself) or ``timeout``; ``at`` the site time."""

    reason: dict[str, str] = field(default_factory=dict)
    at: dict[str, float] = field(default_factory=dict)
    soc: dict[str, float] = field(default_factory=dict)

    def timed_out(self) -> list[str]:
        return [name for name, why in self.reason.items() if why == "timeout"]


def run_phase(
    site: Any,
    analyzer: Any,
    names: list[str],
    power_w: float,
    target_soc: float,
    *,
    stopped: float,
    poll: float,
    timeout: float,
    on_poll: Poll | None = None,
) -> Phase:
    """Drive units ``names`` at ``power_w`` (positive: discharge) until each BMS reports
    ``target_soc`` (at or beyond it) or the unit's output on the analyzer is below ``stopped``
    times ``power_w`` (after the first poll); each is then set to 0 W. Gives up on the rest after
    ``timeout`` s, leaving them at 0 W too.

    A target of 100 % (or 0 %) is the pack's end, not a reading: a BMS reports 100 % from some
    way below true full (its SoC is rounded), so ending the phase there would start the next
    from wherever in that last step the pack happened to be. Such a phase ends only when the
    unit stops by itself (its BMS ends the charge), the same place every time."""
    sign = 1.0 if power_w > 0 else -1.0
    result = Phase()
    pending = set(names)
    for name in names:
        site.nodes[name].inverter.set_power(power_w)
    threshold = abs(power_w) * stopped
    soc_ends = 0.0 < target_soc < 100.0

    def done(name: str, reason: str) -> None:
        node = site.nodes[name]
        node.inverter.set_power(0.0)
        result.reason[name] = reason
        result.at[name] = site.clock.now()
        result.soc[name] = node.bms.soc()
        pending.discard(name)

    def check() -> bool:
        if on_poll is not None:
            on_poll()
        for name in sorted(pending):
            soc = site.nodes[name].bms.soc()
            if soc_ends and (soc - target_soc) * sign <= 0:
                done(name, "soc")
            elif abs(analyzer.measure(f"{name}.inverter.power")) < threshold:
                done(name, "stopped")
        return not pending

    site.clock.sleep(poll)  # the units ramp up before "stopped" can mean anything
    if not site.clock.wait_until(check, timeout=timeout, poll=poll):
        for name in sorted(pending):
            done(name, "timeout")
    return result


def energies(analyzer: Any, names: list[str]) -> dict[str, tuple[float, float]]:
    """Each unit's (imported, exported) energy at its AC terminals now, Wh, from the power
    analyzer's integrators (channels ``<node>.inverter.energy_import`` / ``energy_export``)."""
    return {
        name: (
            analyzer.measure(f"{name}.inverter.energy_import"),
            analyzer.measure(f"{name}.inverter.energy_export"),
        )
        for name in names
    }

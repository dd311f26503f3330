"""Black start: from a dead site the EMS brings the critical loads back within the contracted
time, taking its steps in the contract's codified order (definitions.black_start)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.measure.sequence import deviations
from harness.measure.trace import MeasurementError, Trace
from harness.report.allure_wiring import Stepped

TIME = "black_start.time_to_critical_load"
ORDER = "black_start.sequence_deviation"
CRITICAL = ("critical_load.voltage", "critical_load.frequency")
STATUS = "ems.black_start"
"""The EMS's status output (1 from a black-start command on), on the analyzer's digital input."""


@pytest.fixture
def ems(site: Any, restore_after: None) -> Iterator[Any]:
    """The site's EMS; afterwards told to operate normally again (every bank and load back),
    then the site restored (grid on, PCC closed, units back in service) and given the units'
    enter-service ramp period, so the next scenario finds them at their full output again."""
    if site.ems is None:
        pytest.skip("the site file names no EMS")
    try:
        yield Stepped(site.ems)
    finally:
        site.ems.normal()
        site.restore()
        site.clock.sleep(site.settings.enter_service.ramp)


@pytest.mark.campaign("factory", "ci")
@pytest.mark.switching
def test_black_start(site, grid, pcc, analyzer, ems, verdicts, evidence_dir):
    """Grid simulator off, PCC open, the EMS shuts the site down; once the site is dead the EMS
    is told to black-start it. The critical loads' return is timed on the analyzer; the steps
    the EMS reports are compared with the codified sequence."""
    method = verdicts.method(TIME)
    grid.set_output(False)
    pcc.open()
    ems.shutdown()
    site.clock.sleep(site.seconds(method["dead_settle"]))
    alive = _not_dead(site, analyzer, site.per_unit_voltage(method["dead_voltage"]))
    if alive:
        for quantity in (TIME, ORDER):
            verdicts.record_error(quantity, f"the site is not dead after the shutdown: {alive}")
        return
    observe = max(verdicts.window(TIME), site.seconds(method["observe"]))
    poll = site.seconds(method["status_poll"])
    with analyzer.capture(*CRITICAL, STATUS) as trace:
        ems.black_start()
        site.clock.wait_until(lambda: ems.state() != "BLACK_START", timeout=observe, poll=poll)
        site.clock.sleep(poll)  # the critical loads seen on after the sequence ended
    capture = trace.to_csv(evidence_dir / "black-start-capture.csv")
    _record_time(site, verdicts, method, trace, capture)
    _record_order(site, ems, verdicts, evidence_dir / "black-start-sequence.json")


def _not_dead(site: Any, analyzer: Any, dead_v: float) -> str:
    """What is still alive after the shutdown ("" when nothing is)."""
    alive = [
        f"{channel} {volts:.1f} V"
        for channel in ("pcc.voltage", CRITICAL[0])
        if (volts := analyzer.measure(channel)) >= dead_v
    ]
    alive += [
        f"{name}.inverter {state}"
        for name, node in site.nodes.items()
        if (state := node.inverter.state()) == "ON"
    ]
    return ", ".join(alive)


def _record_time(
    site: Any, verdicts: Any, method: dict[str, Any], trace: Trace, capture: Path
) -> None:
    edges = trace.edges(STATUS, rising=True)
    if edges.size == 0:
        verdicts.record_error(TIME, f"no black-start command ({STATUS} rising) in the capture")
        return
    command = float(edges[0])
    lows = [
        site.per_unit_voltage(method["voltage_band"][0]),
        site.hertz(method["frequency_band"][0]),
    ]
    highs = [
        site.per_unit_voltage(method["voltage_band"][1]),
        site.hertz(method["frequency_band"][1]),
    ]
    try:
        back, never = trace.time_until(CRITICAL, above=lows, below=highs, since=command), False
    except MeasurementError:
        back, never = trace.end - command, True
    verdicts.record(
        TIME,
        back,
        uncertainty=trace.resolution,
        evidence=[capture],
        critical_loads_unsupplied_at_end=never,
        since=command,
    )


def _record_order(site: Any, ems: Any, verdicts: Any, evidence: Path) -> None:
    definitions = site.contract.definitions
    codified = definitions.black_start if definitions else None
    if codified is None:
        verdicts.record_error(ORDER, "the contract defines no definitions.black_start")
        return
    reported = ems.sequence()
    state, stopped_at = ems.state(), ems.current_step()
    found = deviations([step for step, _ in reported], codified.sequence)
    evidence.write_text(
        json.dumps(
            {
                "codified": list(codified.sequence),
                "reported": [{"step": step, "at_s": at} for step, at in reported],
                "ems_state": state,
                "ems_step": stopped_at,
                "deviations": [str(d) for d in found],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    verdicts.record(
        ORDER,
        float(len(found)),
        evidence=[evidence],
        deviations=[str(d) for d in found],
        ems_state=state,
        ems_step=stopped_at,
    )

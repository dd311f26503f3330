"""Operation in normal service: the site's ramp when every unit is dispatched at once, how soon
each unit follows a setpoint written over SunSpec, and whether each battery stays inside the
contract's SoC band when driven toward its ends (Schedule C, operation).

The methods are the catalogue's (harness/config/quantities.d/operation.yaml); power and instants
come from the power analyzer's capture, SoC from what the BMS and the inverter report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.config.units import to_unit
from harness.devices.roles import DeviceError
from harness.measure.operation import max_ramp, nearest_rank, step_latency
from harness.measure.trace import Trace


@pytest.fixture(autouse=True)
def _sends_setpoints(pytestconfig):
    """Every scenario here is setpoint writes: a dry run sends none, so nothing is judged."""
    if pytestconfig.getoption("harness_dry_run", default=False):
        pytest.skip("the scenario is setpoint writes; a dry run sends none")


@pytest.mark.campaign("factory", "ci")
def test_site_ramp_rate(site, analyzer, verdicts, evidence_dir, restore_after):
    """Every unit is told to discharge at once, then to stop at once: the site's active power at
    the PCC must not ramp faster than contracted (the inrush of a fleet dispatched together)."""
    quantity = "site.ramp_rate.max"
    method = verdicts.method(quantity)
    hold, window = site.seconds(method["hold"]), site.seconds(method["window"])
    rated = sum(node.inverter.rated_power() for node in site.nodes.values())
    if not _ready(site, float(method["dispatch"]), method):
        verdicts.record_error(quantity, "not every unit delivered the dispatch level first")
        return
    site.dispatch_all(0.0)
    site.clock.sleep(site.seconds(method["settle"]))
    with analyzer.capture("pcc.power") as trace:
        site.dispatch_all(float(method["dispatch"]))
        site.clock.sleep(hold)
        site.dispatch_all(0.0)
        site.clock.sleep(hold)
    evidence = trace.to_csv(evidence_dir / "ramp-capture.csv")
    ramp = max_ramp(trace, "pcc.power", window)
    percent = 100.0 * ramp.rate / rated
    accuracy = analyzer.accuracy("pcc.power")
    verdicts.record(
        quantity,
        percent,
        uncertainty=percent * (accuracy + 2 * trace.resolution / window),
        evidence=[evidence],
        ramp_w_per_s=ramp.rate,
        site_rated_power_w=rated,
        window_s=window,
        at=ramp.at,  # on the analyzer's timebase
        direction="import rising" if ramp.rising else "export rising",
        reported_settings={name: _settings(node) for name, node in site.nodes.items()},
    )


@pytest.mark.campaign("factory", "ci")
def test_dispatch_latency(site, analyzer, verdicts, evidence_dir, pytestconfig, restore_after):
    """Setpoints are written to every inverter over SunSpec 704, stepping through the
    catalogue's levels; each unit's power (analyzer) must cover the agreed part of every step
    within the contracted latency, at the agreed percentile."""
    quantity = "dispatch.latency.p99"
    method = verdicts.method(quantity)
    campaign = pytestconfig.getoption("harness_campaign")
    steps = int(_pick(method, "steps", campaign))
    levels = [float(x) for x in _pick(method, "levels", campaign)]
    hold = max(site.seconds(method["hold"]), verdicts.window(quantity))
    rated = {name: node.inverter.rated_power() for name, node in site.nodes.items()}
    channels = {name: f"{name}.inverter.power" for name in site.nodes}
    if not _ready(site, max(levels, key=abs), method):
        for name in site.nodes:
            verdicts.record_error(
                quantity, "not every unit delivered the largest level first", node=name
            )
        return
    site.dispatch_all(0.0)
    site.clock.sleep(site.seconds(method["settle"]))
    writes: list[dict[str, float]] = []  # per step: node -> site time of the write
    with _capture(site, analyzer, *channels.values()) as run:
        for i in range(steps):
            level = levels[i % len(levels)]
            written = {}
            for name, node in site.nodes.items():
                written[name] = site.clock.now()
                node.inverter.set_power(level * rated[name])
            writes.append(written)
            site.clock.sleep(hold)
    evidence = run.trace.to_csv(evidence_dir / "dispatch-capture.csv")
    reach = float(method["reach"])
    for name in site.nodes:
        latencies, unreached = [], 0
        for i, written in enumerate(writes):
            since = run.analyzer_time(written[name])
            target = levels[i % len(levels)] * rated[name]
            took = step_latency(run.trace, channels[name], since, target, reach, since + hold)
            if took is None:
                unreached += 1
                took = hold
            latencies.append(took)
        verdicts.record(
            quantity,
            nearest_rank(latencies, float(method["percentile"])),
            node=name,
            uncertainty=run.trace.resolution,
            evidence=[evidence],
            latencies_s=latencies,
            steps_not_covered_within_hold=unreached,
            hold_s=hold,
            capture_started_at=run.t0,
        )


@pytest.mark.campaign("factory", "ci")
def test_soc_band(site, verdicts, evidence_dir, restore_after):
    """Each home is driven toward both ends of the contract's SoC band (discharge, idle, charge,
    idle) and back: the SoC its BMS and its inverter report must stay inside the band."""
    low_q, high_q = "storage.soc.min", "storage.soc.max"
    method = verdicts.method(low_q if verdicts.judged(low_q) else high_q)
    definitions = site.contract.definitions
    band = definitions.soc_band if definitions else None
    if band is None:
        for quantity in (low_q, high_q):
            for name in site.nodes:
                if verdicts.judged(quantity):
                    verdicts.record_error(quantity, "the contract defines no SoC band", node=name)
        return
    approach = to_unit(method["approach"], "%")
    dispatch = float(method["dispatch"])
    names = list(site.nodes)
    log = _SocLog(site)
    site.dispatch_all(0.0)
    site.clock.sleep(site.seconds(method["poll"]))  # at rest: every BMS has sent its SoC
    start = {name: site.nodes[name].bms.soc() for name in names}
    try:
        _push_toward(site, log, band.min + approach, dispatch, method)  # discharge, idle
        _push_toward(site, log, band.max - approach, -dispatch, method)  # charge, idle
    except (TimeoutError, DeviceError) as exc:
        for quantity in (low_q, high_q):
            for name in names:
                verdicts.record_error(quantity, f"the SoC cycle failed: {exc}", node=name)
        return
    finally:
        _back_to(site, start, method)
    evidence = log.write(evidence_dir / "soc-readings.json")
    for name in names:
        low, high = log.extremes(name)
        details = {
            "band": [band.min, band.max],
            "resolution": log.resolution(name),
            "reported_settings": _settings(site.nodes[name]),
        }
        verdicts.record(low_q, low[0], node=name, evidence=[evidence], source=low[1], **details)
        verdicts.record(high_q, high[0], node=name, evidence=[evidence], source=high[1], **details)


# -- procedure ----------------------------------------------------------------------------------


def _pick(method: dict[str, Any], key: str, campaign: str | None) -> Any:
    """A method parameter, or its value for the run's campaign when given per campaign."""
    value = method[key]
    if isinstance(value, dict):
        return value.get(campaign or "default", value["default"])
    return value


def _settings(node: Any) -> dict[str, float]:
    """The setpoint ramp and SoC reserve a unit reports of itself, for the evidence (a driver
    that cannot tell gives none)."""
    reported = getattr(node.inverter, "operation_settings", None)
    return dict(reported()) if callable(reported) else {}


def _ready(site: Any, fraction: float, method: dict[str, Any]) -> bool:
    """Every unit told to deliver ``fraction`` of its rated power, and seen there on the
    analyzer within ``ready_timeout`` (past any enter-service ramp), then back at 0 W."""
    site.dispatch_all(fraction)
    ready = site.wait_for_output(fraction, timeout=site.seconds(method["ready_timeout"]))
    site.dispatch_all(0.0)
    return bool(ready)


def _bring(site: Any, names: list[str], soc: float, method: dict[str, Any]) -> None:
    site.bring_to_soc(
        names,
        soc,
        timeout=site.seconds(method["soc_timeout"]),
        poll=site.seconds(method["soc_poll"]),
    )


def _push_toward(
    site: Any, log: _SocLog, soc: float, fraction: float, method: dict[str, Any]
) -> None:
    """Every home brought to ``soc``, then told to keep going at ``fraction`` of its rated
    power (the unit must stop at its own reserve), then idle; the SoC read throughout."""
    _bring(site, list(site.nodes), soc, method)
    log.read()
    poll = site.seconds(method["poll"])
    site.dispatch_all(fraction)
    log.during(site.seconds(method["push"]), poll)
    site.dispatch_all(0.0)
    log.during(site.seconds(method["idle"]), poll)


def _back_to(site: Any, start: dict[str, float], method: dict[str, Any]) -> None:
    """Every home back at the SoC it was found at (homes found alike move together)."""
    site.dispatch_all(0.0)
    for soc in sorted(set(start.values())):
        _bring(site, [name for name, found in start.items() if found == soc], soc, method)


class _SocLog:
    """Every SoC reading of every home, by source: its BMS on CAN and its inverter (802/713)."""

    SOURCES = ("bms", "inverter")

    def __init__(self, site: Any) -> None:
        self.site = site
        self.readings: dict[str, list[tuple[float, str, float]]] = {n: [] for n in site.nodes}

    def read(self) -> None:
        now = self.site.clock.now()
        for name, node in self.site.nodes.items():
            self.readings[name].append((now, "bms", float(node.bms.soc())))
            reported = node.inverter.storage_readings().get("soc")
            if reported is not None:
                self.readings[name].append((now, "inverter", float(reported)))

    def during(self, seconds: float, poll: float) -> None:
        """Read every ``poll`` for ``seconds`` of site time (and at its end)."""
        end = self.site.clock.now() + seconds
        while (left := end - self.site.clock.now()) > 0:
            self.site.clock.sleep(min(poll, left))
            self.read()

    def extremes(self, name: str) -> tuple[tuple[float, str], tuple[float, str]]:
        """((lowest, its source), (highest, its source)) of a home's readings."""
        seen = self.readings[name]
        if not seen:
            raise DeviceError(f"{name}: no SoC was read")
        low = min(seen, key=lambda r: r[2])
        high = max(seen, key=lambda r: r[2])
        return (low[2], low[1]), (high[2], high[1])

    def resolution(self, name: str) -> dict[str, float]:
        """The resolution of each source's SoC, where the driver states it."""
        node = self.site.nodes[name]
        out = {}
        resolution = getattr(node.bms, "resolution", None)
        if callable(resolution):
            out["bms"] = float(resolution("soc"))
        return out

    def write(self, path: Path) -> Path:
        rows = {
            name: [{"t": t, "source": s, "soc_pct": v} for t, s, v in seen]
            for name, seen in self.readings.items()
        }
        path.write_text(json.dumps(rows, indent=1))
        return path


@dataclass
class _Run:
    """A capture and the site time it was started at (the analyzer counts from its start)."""

    trace: Trace
    t0: float

    def analyzer_time(self, t: float) -> float:
        return t - self.t0


@contextmanager
def _capture(site: Any, analyzer: Any, *channels: str) -> Iterator[_Run]:
    t0 = site.clock.now()
    with analyzer.capture(*channels) as trace:
        yield _Run(trace, t0)

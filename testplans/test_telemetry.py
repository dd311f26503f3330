"""Monitoring: what the units report agrees with what the power analyzer measures."""

from __future__ import annotations

import pytest


@pytest.mark.campaign("factory", "ci")
def test_inverter_power_telemetry(site, node, inverter, analyzer, verdicts, restore_after):
    """IEEE 1547.1-2020 clause 6: at each operating point, after settling, the inverter's SunSpec
    active power agrees with the analyzer, as a percentage of rated power."""
    quantity = "inverter.telemetry.power_error"
    method = verdicts.method(quantity)
    rated = inverter.rated_power()
    channel = f"{node}.inverter.power"
    points = []
    for fraction in method["operating_points"]:
        inverter.set_power(fraction * rated)
        site.clock.sleep(site.seconds(method["settle"]))
        reported, measured = inverter.power(), analyzer.measure(channel)
        points.append((abs(reported - measured) / rated * 100, reported, measured))
    error, reported, measured = max(points)
    verdicts.record(
        quantity,
        error,
        node=node,
        uncertainty=analyzer.accuracy(channel) * abs(measured) / rated * 100,
        reported_w=reported,
        analyzer_w=measured,
    )


@pytest.mark.campaign("factory", "ci")
def test_bms_voltage_current_telemetry(
    site, node, inverter, bms, analyzer, verdicts, restore_after
):
    """The BMS's CAN pack voltage and current agree with the analyzer's DC channels."""
    v_q, i_q = "bms.telemetry.voltage_error", "bms.telemetry.current_error"
    method = verdicts.method(v_q)
    rated = inverter.rated_power()
    v_ch, i_ch = f"{node}.battery.voltage", f"{node}.battery.current"
    v_points, i_points = [], []
    for fraction in method["operating_points"]:
        inverter.set_power(fraction * rated)
        site.clock.sleep(site.seconds(method["settle"]))
        v_meas, i_meas = analyzer.measure(v_ch), analyzer.measure(i_ch)
        full_scale_a = rated / v_meas
        v_points.append((abs(bms.voltage() - v_meas) / v_meas * 100, v_meas))
        i_points.append((abs(bms.current() - i_meas) / full_scale_a * 100, i_meas, full_scale_a))
    v_err, v_meas = max(v_points)
    i_err, i_meas, full_scale_a = max(i_points)
    if verdicts.judged(v_q):
        verdicts.record(v_q, v_err, node=node, uncertainty=analyzer.accuracy(v_ch) * 100)
    if verdicts.judged(i_q):
        verdicts.record(
            i_q,
            i_err,
            node=node,
            uncertainty=analyzer.accuracy(i_ch) * abs(i_meas) / full_scale_a * 100,
        )

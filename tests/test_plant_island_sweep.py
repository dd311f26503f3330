"""Physics of a detuned island: the RLC load's resonance sets the island frequency, and the
inverter's anti-islanding detection time follows the island (data/anti_islanding.yaml), so the
IEEE 1547.1 reactive-load sweep measures different islands; the blind-spot defect moves the
slowest point off balance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from tests.test_plant import F_NOM, NODE, RATED, V_NOM, event_time, make_plant
from virtual_devices.defects import parse_defects
from virtual_devices.plant.island_detection import (
    IslandDetection,
    load_island_detection,
)
from virtual_devices.plant.load import IslandLoad
from virtual_devices.plant.plant import Plant
from virtual_devices.plant_config import plant_params

CURVE = load_island_detection()
SLOWEST = 0.5


def detecting(center_hz: float | None = None, slowest_s: float = SLOWEST) -> IslandDetection:
    return IslandDetection(CURVE, slowest_s, center_hz)


def island(
    capacitive_pct: float, detection: IslandDetection | None, after_s: float = 3.0, **inverter
) -> tuple[Plant, float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Rated output into an island of a rated RLC load (Q 1.0) with C at ``capacitive_pct``."""
    plant = make_plant(island_load_w=RATED, inverter={"island_detection": detection, **inverter})
    plant.island_load.set_reactive(100.0, capacitive_pct)
    plant.nodes[NODE].inverter.set_power_setpoint(RATED)
    plant.advance(5.0)
    handle = plant.recorder.start(["pcc.frequency", "inverters.current"])
    plant.pcc.open()
    opened = plant.t
    plant.advance(opened + after_s)
    return plant, opened, plant.recorder.stop(handle)


def clearing(capacitive_pct: float, detection: IslandDetection | None, **inverter) -> float:
    plant, opened, _ = island(capacitive_pct, detection, **inverter)
    return event_time(plant, f"{NODE}.inverter.cease:island") - opened


@pytest.mark.parametrize("capacitive_pct", [95.0, 100.0, 103.0, 105.0])
def test_resonance_follows_l_and_c(capacitive_pct: float) -> None:
    load = IslandLoad(RATED, 1.0, V_NOM, F_NOM)
    load.set_reactive(100.0, capacitive_pct)
    lc = load.inductance_h * load.capacitance_f
    assert load.resonant_frequency_hz == pytest.approx(1 / (2 * math.pi * math.sqrt(lc)))
    assert load.resonant_frequency_hz == pytest.approx(F_NOM / math.sqrt(capacitive_pct / 100))
    # The ring-down follows the capacitor: 2 R C.
    assert load.time_constant_s == pytest.approx(2 * load.resistance_ohm * load.capacitance_f)


def test_resizing_keeps_the_tuning_and_bad_settings_are_refused() -> None:
    load = IslandLoad(RATED, 1.0, V_NOM, F_NOM)
    load.set_reactive(98.0, 104.0)
    load.set(2 * RATED, 2.0)
    assert (load.inductive_pct, load.capacitive_pct) == (98.0, 104.0)
    assert load.capacitive_var == pytest.approx(1.04 * 2.0 * 2 * RATED)
    with pytest.raises(ValueError, match="> 0 %"):
        load.set_reactive(100.0, 0.0)


@pytest.mark.parametrize("capacitive_pct", [95.0, 100.0, 103.0, 105.0])
def test_energized_island_settles_at_the_load_resonance(capacitive_pct: float) -> None:
    plant, opened, trace = island(capacitive_pct, detecting(slowest_s=2.0), after_s=1.0)
    times, hz = trace["pcc.frequency"]
    expected = F_NOM / math.sqrt(capacitive_pct / 100)
    tau = plant.island_load.time_constant_s
    settled = (times > opened + 10 * tau) & (times < opened + 0.5)  # before any unit ceases
    assert settled.any()
    np.testing.assert_allclose(hz[settled], expected, atol=1e-3)
    # It gets there with the load's time constant, not at once (unless balanced).
    first = hz[times > opened][0]
    assert abs(first - F_NOM) < abs(expected - F_NOM) or capacitive_pct == 100.0


def test_clearing_time_follows_the_island_frequency() -> None:
    times = {pct: clearing(pct, detecting()) for pct in (95.0, 98.0, 100.0, 101.0, 103.0, 105.0)}
    for pct, seconds in times.items():
        offset = F_NOM / math.sqrt(pct / 100) - F_NOM
        assert seconds == pytest.approx(detecting().detection_s(offset), abs=2e-3), pct
    # Slowest next to balance (the healthy NDZ sits just below nominal), fast far away.
    assert max(times, key=times.__getitem__) in (100.0, 101.0)
    assert times[95.0] < 0.5 * times[100.0] and times[105.0] < 0.5 * times[100.0]
    assert times[95.0] >= CURVE.fastest * SLOWEST - 1e-9


def test_blind_spot_defect_is_slow_only_off_balance() -> None:
    offset = F_NOM / math.sqrt(1.03) - F_NOM  # the island of 103 % capacitive reactive load
    blind = detecting(center_hz=offset, slowest_s=2.1)
    assert clearing(103.0, blind) == pytest.approx(2.1, abs=2e-3)
    assert clearing(100.0, blind) < 1.0  # the balanced test alone passes it
    assert clearing(103.0, detecting()) < 0.5 * 2.1  # a healthy unit there is fast


def test_anti_islanding_delay_defect_ignores_the_island() -> None:
    for pct in (95.0, 100.0, 103.0):
        assert clearing(pct, detecting(), anti_islanding_delay_s=1.2345) == pytest.approx(
            1.2345, abs=1e-9
        )


def test_detection_file_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "ai.yaml"
    bad.write_text("non_detection_zone: {center: -0.1 Hz, width: 0 Hz}\nfastest: 40 %\n")
    with pytest.raises(ConfigErrors, match=r"non_detection_zone\.width"):
        load_island_detection(bad)
    bad.write_text("non_detection_zone: {center: -0.1 Hz}\nfastest: 40 %\n")
    with pytest.raises(ConfigErrors, match="width"):
        load_island_detection(bad)


CLUSTER = Path(__file__).resolve().parent.parent / "fixtures/sites/virtual-cluster.yaml"


def test_site_defect_reaches_the_units_curve(defect_site) -> None:
    spot = "{device: home-2.inverter, kind: anti_islanding_blind_spot, value: 2.1 s, offset: %s}"
    site = load_site(defect_site(f"  - {spot % '-0.88 Hz'}", CLUSTER))
    nodes = {n.name: n.inverter for n in plant_params(site, parse_defects(site)).nodes}
    blind = nodes["home-2"].island_detection
    healthy = nodes["home-1"].island_detection
    assert blind is not None and healthy is not None
    assert (blind.slowest_s, blind.ndz_center_hz) == (2.1, -0.88)
    assert healthy.ndz_center_hz == CURVE.center_hz
    assert healthy.slowest_s == site.node("home-1").inverter.virtual.anti_islanding_detection
    with pytest.raises(ConfigErrors, match=r"anti_islanding_blind_spot\.offset"):
        site = load_site(defect_site(f"  - {spot % '-0.88 s'}", CLUSTER))
        plant_params(site, parse_defects(site))

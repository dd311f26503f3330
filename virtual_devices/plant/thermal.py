"""First-order thermal model of a battery pack: one heat capacity, one path to ambient.

    C dT/dt = P_heat - k (T - T_ambient)

with ``C`` the pack's heat capacity (J/degC), ``k`` its cooling coefficient (W/degC, the inverse
of the thermal resistance to ambient) and ``P_heat`` the Joule heat I^2 R of the current through
the pack's series resistance. Over a step with constant heat the solution is exact:

    T(t + dt) = T_ss + (T(t) - T_ss) exp(-dt / tau),   T_ss = T_ambient + P_heat / k,   tau = C / k

so the result does not depend on how the plant chooses its steps. The ambient can change at run
time (a thermal chamber); the change applies from the next step on.
"""

from __future__ import annotations

import math


class ThermalModel:
    """Pack temperature, degC, under Joule heating and cooling to an ambient."""

    __slots__ = ("ambient_c", "cooling_w_per_c", "heat_capacity_j_per_c", "tau_s", "temperature_c")

    def __init__(
        self,
        ambient_c: float,
        heat_capacity_j_per_c: float,
        cooling_w_per_c: float,
        temperature_c: float | None = None,
    ) -> None:
        if not heat_capacity_j_per_c > 0:
            raise ValueError(f"heat capacity must be > 0 J/degC, not {heat_capacity_j_per_c}")
        if not cooling_w_per_c > 0:
            raise ValueError(f"cooling coefficient must be > 0 W/degC, not {cooling_w_per_c}")
        self.ambient_c = float(ambient_c)
        self.heat_capacity_j_per_c = float(heat_capacity_j_per_c)
        self.cooling_w_per_c = float(cooling_w_per_c)
        self.tau_s = self.heat_capacity_j_per_c / self.cooling_w_per_c
        """Time constant C / k, s."""
        self.temperature_c = self.ambient_c if temperature_c is None else float(temperature_c)

    def steady_state_c(self, heat_w: float) -> float:
        """The temperature the pack settles at under a constant ``heat_w``."""
        return self.ambient_c + heat_w / self.cooling_w_per_c

    def step(self, dt: float, heat_w: float) -> float:
        """Advance ``dt`` seconds under a constant ``heat_w``; returns the new temperature."""
        if dt > 0.0:
            final = self.ambient_c + heat_w / self.cooling_w_per_c
            self.temperature_c = final + (self.temperature_c - final) * math.exp(-dt / self.tau_s)
        return self.temperature_c

    def time_to_reach(self, target_c: float, heat_w: float) -> float:
        """Seconds until the pack reaches ``target_c`` under a constant ``heat_w`` (inf: never)."""
        final = self.steady_state_c(heat_w)
        start = self.temperature_c
        if start == target_c:
            return 0.0
        if (target_c - start) * (final - start) <= 0 or abs(final - start) <= abs(target_c - start):
            return math.inf
        return -self.tau_s * math.log((final - target_c) / (final - start))

"""An inverter's communication-loss supervision: a controller that stops talking to the unit
must not leave it running at its last setpoint for ever.

The unit is set with a timeout and a safe setpoint (SunSpec 704 ``WSetRvrtTms`` and ``WSetRvrt``,
armed by ``WSetEnaRvrt``; see virtual_devices/endpoints/inverter.py). Every Modbus request
addressed to the unit, read or write, restarts the timer; once no request has come for the
timeout, the unit reverts its active-power setpoint to the safe one (which it then approaches
at its setpoint ramp, as any setpoint). A request after that restarts the timer but does not
undo the reversion: only a new setpoint does.

Defect hooks (``virtual_devices/data/defects/comm_faults.yaml``): ``extra_delay_s`` makes the
unit revert that much later than its timeout; ``ignored`` makes it never revert. Neither changes
the settings the unit reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class CommSupervision:
    """The supervision's settings and timer; the inverter asks :meth:`due` and calls
    :meth:`expire` when it is reached."""

    extra_delay_s: float = 0.0
    ignored: bool = False
    enabled: bool = False
    timeout_s: float = 0.0
    """0: no supervision, as SunSpec's reversion time 0 means."""
    safe_setpoint_w: float = 0.0
    last_request_t: float | None = None
    reverted: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.extra_delay_s) and self.extra_delay_s >= 0):
            raise ValueError(f"comm-loss extra delay must be >= 0 s, not {self.extra_delay_s!r}")

    def configure(
        self,
        *,
        enabled: bool | None = None,
        timeout_s: float | None = None,
        safe_setpoint_w: float | None = None,
    ) -> None:
        """Change the settings given; the timer keeps running from the last request."""
        if timeout_s is not None:
            if not (math.isfinite(timeout_s) and timeout_s >= 0):
                raise ValueError(f"comm-loss timeout must be >= 0 s, not {timeout_s!r}")
            self.timeout_s = float(timeout_s)
        if safe_setpoint_w is not None:
            self.safe_setpoint_w = float(safe_setpoint_w)
        if enabled is not None:
            self.enabled = bool(enabled)
        self.reverted = False

    def heard(self, t: float) -> None:
        """A request addressed to the unit arrived at ``t``."""
        self.last_request_t = t

    @property
    def armed(self) -> bool:
        return (
            self.enabled
            and self.timeout_s > 0
            and self.last_request_t is not None
            and not self.reverted
            and not self.ignored
        )

    def due(self) -> float:
        """When the unit reverts if nothing more is heard (inf: it does not)."""
        if not self.armed:
            return math.inf
        assert self.last_request_t is not None
        return self.last_request_t + self.timeout_s + self.extra_delay_s

    def remaining(self, t: float) -> float | None:
        """Seconds the unit still waits for a request (as it reports them), None when not
        supervising; this ignores the defect's extra delay, as the unit's own count would."""
        if not self.armed:
            return None
        assert self.last_request_t is not None
        return max(0.0, self.last_request_t + self.timeout_s - t)

    def expire(self, t: float) -> bool:
        """Whether the timeout is reached at ``t``; if so, the unit is now reverted."""
        if t + 1e-9 >= self.due():
            self.reverted = True
            return True
        return False

"""An inverter's communication-loss supervision as the harness sets and observes it.

SunSpec has no separate "communication timeout" point; model 704's reversion points carry it:
``WSetRvrtTms`` (s; 0 = none) is how long the unit waits without its controller, ``WSetRvrt``
(W) the setpoint it reverts to while ``WSetEnaRvrt`` is ENABLED. Writes pass the write guard of
the inverter's map like any other. :class:`TrafficLog` notes, on the site clock, every Modbus
transaction with one unit, so a scenario can show it stayed silent and time from the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.devices.roles import DeviceError
from harness.transports.modbus import ModbusError, Transaction, WriteRefused

TIMEOUT = "DERCtlAC.WSetRvrtTms"
SAFE_SETPOINT = "DERCtlAC.WSetRvrt"
SAFE_ENABLE = "DERCtlAC.WSetEnaRvrt"
POINTS = (SAFE_ENABLE, SAFE_SETPOINT, TIMEOUT)


def _device(inverter: Any) -> Any:
    get = getattr(inverter, "modbus_device", None)
    if get is None:
        raise DeviceError(f"{inverter.name}: not reached over Modbus; no comm-loss settings")
    device = get()
    missing = [p for p in POINTS if p not in device.regmap]
    if missing:
        raise DeviceError(
            f"{inverter.name}: no communication-loss settings ({', '.join(missing)}; "
            "SunSpec model 704 reversion points)"
        )
    return device


def _write(inverter: Any, values: dict[str, Any], what: str) -> None:
    try:
        _device(inverter).write_many(values)
    except WriteRefused as exc:
        raise WriteRefused(f"{inverter.name}: {exc}") from None
    except ModbusError as exc:
        raise DeviceError(f"{inverter.name}: {what} failed: {exc}") from exc


def set_comm_loss(inverter: Any, timeout_s: float, safe_setpoint_w: float) -> None:
    """Arm the unit's supervision: revert to ``safe_setpoint_w`` after ``timeout_s`` (whole
    seconds, as the register holds them) without a request."""
    if timeout_s <= 0 or timeout_s != int(timeout_s):
        raise ValueError(f"comm-loss timeout {timeout_s:g} s: a whole number of seconds > 0")
    _write(
        inverter,
        {SAFE_ENABLE: "ENABLED", SAFE_SETPOINT: float(safe_setpoint_w)},
        "setting the safe setpoint",
    )
    _write(inverter, {TIMEOUT: float(timeout_s)}, "setting the comm-loss timeout")


def clear_comm_loss(inverter: Any) -> None:
    """Disarm it again (reversion time 0: none), as the unit was found on the virtual site."""
    _write(inverter, {TIMEOUT: 0.0}, "clearing the comm-loss timeout")


@dataclass
class TrafficLog:
    """Site times of the transactions with one unit while :func:`traffic` is open."""

    device: str
    times: list[float] = field(default_factory=list)

    def last(self) -> float | None:
        return self.times[-1] if self.times else None

    def after(self, t: float) -> list[float]:
        """Transactions later than ``t`` (a silence that was broken)."""
        return [x for x in self.times if x > t]


@contextmanager
def traffic(inverter: Any, now: Callable[[], float]) -> Iterator[TrafficLog]:
    """Note every Modbus transaction of ``inverter``'s client, stamped with ``now()``."""
    client = _device(inverter).client
    log = TrafficLog(inverter.name)

    def listener(_tx: Transaction) -> None:
        log.times.append(now())

    client.add_listener(listener)
    try:
        yield log
    finally:
        client.remove_listener(listener)

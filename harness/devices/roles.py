"""Roles: what a scenario may ask of a device, whatever driver reaches it.

Values are floats in SI units (W, V, A, Hz, s) or percent, as each method says. A driver that
cannot obtain a value raises :class:`DeviceError` with a diagnostic; it never returns a guess.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.measure.trace import Trace


class DeviceError(RuntimeError):
    """A device did not answer, answered wrongly, or refused a command."""


@dataclass(frozen=True)
class Identity:
    """Who a DUT or instrument says it is; goes into every record of what ran on which unit."""

    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class Device(ABC):
    """Anything bound to a role in the site file."""

    name: str

    @abstractmethod
    def identity(self) -> Identity: ...

    def disconnect(self) -> None:  # noqa: B027 - optional hook, most drivers override it
        """Release the transport; the default has nothing to release."""


class Inverter(Device):
    @abstractmethod
    def power(self) -> float:
        """Reported AC active power, W (positive = export)."""

    @abstractmethod
    def voltage(self) -> float:
        """Reported AC voltage, V."""

    @abstractmethod
    def frequency(self) -> float:
        """Reported frequency, Hz."""

    @abstractmethod
    def rated_power(self) -> float:
        """Nameplate active power, W."""

    @abstractmethod
    def set_power(self, watts: float) -> None:
        """Command an active-power setpoint (positive = discharge/export)."""

    @abstractmethod
    def state(self) -> str:
        """Operating state as the device names it (e.g. ``ON``, ``OFF``, ``TRIPPED``)."""


class Bms(Device):
    @abstractmethod
    def voltage(self) -> float:
        """Reported pack voltage, V."""

    @abstractmethod
    def current(self) -> float:
        """Reported pack current, A (positive = charging, as the CAN protocol reports it)."""

    @abstractmethod
    def soc(self) -> float:
        """Reported state of charge, %."""

    @abstractmethod
    def cycle_deviation(self) -> dict[str, float]:
        """Per message: worst relative deviation of the observed period from its DBC cycle, %."""

    @abstractmethod
    def missing(self) -> list[str]:
        """Messages the BMS must send that were not received in the observation window."""

    @abstractmethod
    def reset_statistics(self) -> None:
        """Start a new observation window for cycle times and missing messages."""


class GridSimulator(Device):
    @abstractmethod
    def set_voltage(self, volts: float) -> None: ...

    @abstractmethod
    def set_frequency(self, hertz: float) -> None: ...

    @abstractmethod
    def set_output(self, on: bool) -> None: ...


class PowerAnalyzer(Device):
    @abstractmethod
    def measure(self, channel: str) -> float:
        """Present value of a channel, in the channel's unit."""

    @abstractmethod
    def capture(self, *channels: str) -> AbstractContextManager[Trace]:
        """Record ``channels`` on the analyzer's own timebase while the block runs."""

    @abstractmethod
    def accuracy(self, channel: str) -> float:
        """Stated accuracy of a channel, as a fraction of reading (0.001 = 0.1 %)."""


class Breaker(Device):
    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def is_closed(self) -> bool: ...


def iter_roles() -> Iterator[type[Device]]:
    yield from (Inverter, Bms, GridSimulator, PowerAnalyzer, Breaker)

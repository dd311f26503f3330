"""A BMS reached over CAN through a DBC: the ``dbc`` driver of the :class:`Bms` role.

Which signal carries which quantity is a small map file (``fixtures/maps/pylontech_lv_bms.yaml``
for the low-voltage protocol), checked against the site's DBC when the driver is built, so a
typo fails before a run, not in the middle of one. The driver only reads what the transport has
decoded: feeding the transport (``pump()`` after each simulated step, or ``start()`` in real time)
is the site's job. A value is only as good as its age: one older than ``stale_after_s`` raises
instead of being reported, because a silent BMS must fail a run, never pass it on old data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cantools.database.can import Database

from harness.config.errors import ConfigErrors
from harness.config.yamlsrc import LineMap, load_yaml
from harness.devices.roles import Bms, DeviceError, Identity
from harness.transports.can import CanTransport

SignalRef = tuple[str, str]
"""(message name, signal name)."""


@dataclass(frozen=True)
class BmsMap:
    """A parsed BMS map: role quantities, alarms and identity bytes as DBC signal references."""

    node: str
    heartbeat: str | None
    quantities: dict[str, SignalRef]
    alarms: dict[str, SignalRef] = field(default_factory=dict)
    warnings: dict[str, SignalRef] = field(default_factory=dict)
    manufacturer: list[SignalRef] = field(default_factory=list)


def load_bms_map(path: Path, db: Database) -> BmsMap:
    """Parse ``path`` and check every reference against ``db``; errors name file, line, field."""
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigErrors.single(path, "expected a mapping", 1)
    parser = _MapParser(path, lines, db)
    for key in ("node", "quantities"):
        if key not in data:
            raise ConfigErrors.single(path, f"missing key {key!r}", 1, key)
    node = str(data["node"])
    if not any(node in m.senders for m in db.messages):
        raise parser.error(f"no message of the DBC is sent by node {node!r}", "node")
    heartbeat = data.get("heartbeat")
    if heartbeat is not None and str(heartbeat) not in {m.name for m in db.messages}:
        raise parser.error(f"message {heartbeat!r} is not in the DBC", "heartbeat")
    identity = data.get("identity") or {}
    manufacturer = identity.get("manufacturer", []) if isinstance(identity, dict) else None
    if not isinstance(manufacturer, list):
        raise parser.error("expected a list of Message.Signal", "identity", "manufacturer")
    return BmsMap(
        node=node,
        heartbeat=str(heartbeat) if heartbeat is not None else None,
        quantities=parser.table(data, "quantities"),
        alarms=parser.table(data, "alarms"),
        warnings=parser.table(data, "warnings"),
        manufacturer=[
            parser.ref(ref, "identity", "manufacturer", i) for i, ref in enumerate(manufacturer)
        ],
    )


class _MapParser:
    def __init__(self, path: Path, lines: LineMap, db: Database) -> None:
        self.path, self.lines = path, lines
        self.signals = {m.name: {s.name for s in m.signals} for m in db.messages}

    def error(self, message: str, *loc: str | int) -> ConfigErrors:
        return ConfigErrors.single(
            self.path, message, self.lines.line(loc), ".".join(map(str, loc))
        )

    def table(self, data: dict[str, object], key: str) -> dict[str, SignalRef]:
        section = data.get(key) or {}
        if not isinstance(section, dict):
            raise self.error("expected a mapping of name -> Message.Signal", key)
        return {str(name): self.ref(ref, key, name) for name, ref in section.items()}

    def ref(self, ref: object, *loc: str | int) -> SignalRef:
        message, _, signal = str(ref).partition(".")
        if not signal:
            raise self.error(f"{ref!r} is not Message.Signal", *loc)
        if message not in self.signals:
            raise self.error(f"message {message!r} is not in the DBC", *loc)
        if signal not in self.signals[message]:
            raise self.error(f"signal {signal!r} is not in message {message!r}", *loc)
        return message, signal


class DbcBms(Bms):
    """The :class:`Bms` role over a :class:`CanTransport` and a :class:`BmsMap`.

    ``now`` is the site clock's ``now`` (values are stamped on the same timebase). Cycle times
    are judged for ``required`` messages: by default every message the map's node sends that has
    a DBC cycle time (event-driven messages have no period to judge).
    """

    def __init__(
        self,
        transport: CanTransport,
        bms_map: BmsMap,
        now: Callable[[], float],
        stale_after_s: float = 3.0,
        name: str = "bms",
        required: list[str] | None = None,
    ) -> None:
        self.transport = transport
        self.map = bms_map
        self.now = now
        self.stale_after_s = stale_after_s
        self.name = name
        if required is None:
            required = [
                m.name for m in transport.db.messages if bms_map.node in m.senders and m.cycle_time
            ]
        self.required = required

    # -- reading ------------------------------------------------------------------------------

    def _read(self, ref: SignalRef, stale_after_s: float | None = None) -> float:
        message, signal = ref
        value = self.transport.latest(message, signal)
        if value is None:
            raise DeviceError(f"{self.name}: CAN message {message} never received")
        age = self.now() - value.t
        limit = self.stale_after_s if stale_after_s is None else stale_after_s
        if age > limit:
            raise DeviceError(
                f"{self.name}: CAN message {message} is stale: last received at t={value.t:.3f} s,"
                f" {age:.3f} s ago (limit {limit} s)"
            )
        return value.value

    def value(self, quantity: str) -> float:
        """Any quantity the map binds (e.g. ``charge_current_limit``), in its DBC unit."""
        try:
            ref = self.map.quantities[quantity]
        except KeyError:
            raise DeviceError(f"{self.name}: the BMS map binds no quantity {quantity!r}") from None
        return self._read(ref)

    def voltage(self) -> float:
        return self.value("voltage")

    def current(self) -> float:
        return self.value("current")

    def soc(self) -> float:
        return self.value("soc")

    def _flags(self, table: Mapping[str, SignalRef]) -> set[str]:
        return {name for name, ref in table.items() if self._read(ref) >= 0.5}

    def alarms(self) -> set[str]:
        """Names of the protection alarms the BMS reports as active."""
        return self._flags(self.map.alarms)

    def warnings(self) -> set[str]:
        """Names of the warnings the BMS reports as active."""
        return self._flags(self.map.warnings)

    def identity(self) -> Identity:
        """The manufacturer name the BMS sends (the protocol carries nothing more).

        Identity never changes, so any received copy counts, however old.
        """
        raw = bytes(int(self._read(ref, math.inf)) & 0xFF for ref in self.map.manufacturer)
        text = raw.decode("ascii", errors="replace").strip("\0 ")
        return Identity(manufacturer=text)

    # -- cycle times --------------------------------------------------------------------------

    def cycle_deviation(self) -> dict[str, float]:
        """Per required message: worst period deviation from the DBC cycle time, %.

        A message received fewer than twice has no observed period and reports ``inf`` (it
        cannot be shown to conform); :meth:`missing` lists the ones never received at all.
        """
        return {m: self.transport.deviation_pct(m) for m in self.required}

    def reset_statistics(self) -> None:
        """Start a fresh observation window for :meth:`cycle_deviation` and :meth:`missing`."""
        self.transport.reset_stats()

    def missing(self) -> list[str]:
        """Required messages never received since the transport's statistics began."""
        return [m for m in self.required if self.transport.stats(m).count == 0]

    # -- sending ------------------------------------------------------------------------------

    def send_heartbeat(self, signals: dict[str, float] | None = None) -> None:
        """Send the heartbeat the BMS supervises, stamped with site time."""
        if self.map.heartbeat is None:
            raise DeviceError(f"{self.name}: the BMS map names no heartbeat message")
        try:
            self.transport.send(self.map.heartbeat, signals or {}, timestamp=self.now())
        except Exception as exc:
            raise DeviceError(f"{self.name}: cannot send {self.map.heartbeat}: {exc}") from exc

    def disconnect(self) -> None:
        self.transport.close()

"""The virtual BMS endpoint: a plant battery seen through a CAN protocol.

Which signal carries which battery quantity is data (a binding file next to the DBC's other
facts, ``virtual_devices/data/pylontech_lv_binding.yaml``), so another protocol is another pair of
files, not new code. The endpoint reads the battery at send time and transmits through a
:class:`CanNode`; it never decides anything itself (protections, limits, contactors live in the
plant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
from cantools.database.can import Database

from harness.config.errors import ConfigErrors
from harness.config.yamlsrc import LineMap, load_yaml
from harness.transports.can import load_database
from virtual_devices.endpoints.can_node import CanNode, default_messages

DEFAULT_BINDING = Path(__file__).resolve().parents[1] / "data" / "pylontech_lv_binding.yaml"
IDENTITY_BYTES = 8

Getter = Callable[[Any], float]
_SOURCES = ("quantity", "flag", "positive", "constant", "identity_byte")
_DIRECTIONS = ("charging", "discharging")


@dataclass(frozen=True)
class BmsBinding:
    """A parsed binding file: DBC, sending node, heartbeat and per-signal sources."""

    path: Path
    dbc: Path
    node: str
    heartbeat: str | None
    current_quantity: str
    signals: dict[str, dict[str, dict[str, Any]]]
    """message -> signal -> source spec (one of ``_SOURCES`` plus options)."""
    lines: LineMap | None = field(default=None, compare=False, repr=False)

    def error(self, message: str, *loc: str) -> ConfigErrors:
        """A ConfigErrors naming this file and the line of ``loc`` (a key path)."""
        line = self.lines.line(loc) if self.lines else None
        return ConfigErrors.single(self.path, message, line, ".".join(loc))


def load_binding(path: Path = DEFAULT_BINDING) -> BmsBinding:
    """Parse a binding file; every error names the file, the line and the field."""
    data, lines = load_yaml(path)

    def fail(message: str, *loc: str | int) -> ConfigErrors:
        return ConfigErrors.single(path, message, lines.line(loc), ".".join(map(str, loc)))

    if not isinstance(data, dict):
        raise fail("expected a mapping")
    for key in ("dbc", "node", "messages"):
        if key not in data:
            raise fail(f"missing key {key!r}")
    messages = data["messages"]
    if not isinstance(messages, dict):
        raise fail("expected a mapping of message -> signal -> source", "messages")
    signals: dict[str, dict[str, dict[str, Any]]] = {}
    for msg_name, sigs in messages.items():
        if not isinstance(sigs, dict):
            raise fail("expected a mapping of signal -> source", "messages", msg_name)
        signals[msg_name] = {}
        for sig_name, spec in sigs.items():
            where = ("messages", msg_name, sig_name)
            sources = [k for k in _SOURCES if isinstance(spec, dict) and k in spec]
            if len(sources) != 1:
                raise fail(f"expected exactly one of {', '.join(_SOURCES)}", *where)
            if spec.get("direction", "charging") not in _DIRECTIONS:
                raise fail(f"direction must be one of {_DIRECTIONS}", *where)
            signals[msg_name][sig_name] = dict(spec)
    return BmsBinding(
        path=path,
        dbc=(path.parent / str(data["dbc"])).resolve(),
        node=str(data["node"]),
        heartbeat=str(data["heartbeat"]) if data.get("heartbeat") else None,
        current_quantity=str(data.get("current_quantity", "current_a")),
        signals=signals,
        lines=lines,
    )


def _check_against_db(binding: BmsBinding, db: Database) -> None:
    """Every bound message and signal must exist in the DBC (a typo fails at build time)."""
    names = {m.name: m for m in db.messages}
    for msg_name, sigs in binding.signals.items():
        message = names.get(msg_name)
        if message is None:
            raise binding.error(
                f"message {msg_name!r} is not in {binding.dbc.name}",
                "messages",
                msg_name,
            )
        known = {s.name for s in message.signals}
        for sig_name in sigs:
            if sig_name not in known:
                raise binding.error(
                    f"signal {sig_name!r} is not in message {msg_name!r} of {binding.dbc.name}",
                    "messages",
                    msg_name,
                    sig_name,
                )
    if binding.heartbeat is not None and binding.heartbeat not in names:
        raise binding.error(
            f"message {binding.heartbeat!r} is not in {binding.dbc.name}", "heartbeat"
        )


class VirtualBms:
    """A plant battery transmitted on a CAN bus according to a binding file.

    ``identity`` is the manufacturer string sent in ASCII bytes (truncated to the 8 bytes the
    protocol carries, NUL-padded). ``periods_s`` overrides DBC cycle times (the ``cycle_time``
    defect); ``messages`` narrows what is sent (a missing-message defect). The endpoint owns the
    bus once handed over.
    """

    def __init__(
        self,
        bus: can.BusABC,
        battery: Any,
        identity: str,
        periods_s: dict[str, float] | None = None,
        start_time: float = 0.0,
        binding: Path | BmsBinding = DEFAULT_BINDING,
        messages: list[str] | None = None,
    ) -> None:
        self.battery = battery
        self.binding = binding if isinstance(binding, BmsBinding) else load_binding(binding)
        self.db = load_database(self.binding.dbc)
        _check_against_db(self.binding, self.db)
        raw = identity.encode("ascii")[:IDENTITY_BYTES]
        self.identity_bytes = raw.ljust(IDENTITY_BYTES, b"\0")
        self._charging = False  # direction while the current is zero: discharge (the safe guess)
        self._getters = {
            msg: {sig: self._getter(spec) for sig, spec in sigs.items()}
            for msg, sigs in self.binding.signals.items()
        }
        self.node = CanNode(
            bus,
            self.db,
            messages if messages is not None else default_messages(self.db, self.binding.node),
            self.values,
            periods_s=periods_s,
            start_time=start_time,
        )

    def _getter(self, spec: dict[str, Any]) -> Getter:
        if "quantity" in spec:
            name, scale = str(spec["quantity"]), float(spec.get("scale", 1.0))
            return lambda b: float(getattr(b, name)) * scale
        if "flag" in spec:
            flag, within = str(spec["flag"]), str(spec.get("in", "protections"))
            direction = spec.get("direction")
            if direction is None:
                return lambda b: float(flag in getattr(b, within))
            want_charging = direction == "charging"
            return lambda b: float(
                flag in getattr(b, within) and self._is_charging() is want_charging
            )
        if "positive" in spec:
            name = str(spec["positive"])
            return lambda b: float(getattr(b, name) > 0)
        if "constant" in spec:
            value = float(spec["constant"])
            return lambda b: value
        index = int(spec["identity_byte"])
        return lambda b: float(self.identity_bytes[index])

    def _is_charging(self) -> bool:
        current = float(getattr(self.battery, self.binding.current_quantity))
        if current != 0.0:
            self._charging = current > 0.0
        return self._charging

    def values(self, message: str) -> dict[str, float]:
        """Signal values of ``message`` from the battery's present state."""
        return {sig: get(self.battery) for sig, get in self._getters.get(message, {}).items()}

    def advance(self, until: float) -> None:
        """Bring the endpoint to site time ``until`` (a SimClock advancer)."""
        self.node.advance(until)

    @property
    def last_heartbeat(self) -> float | None:
        """Site time of the last inverter heartbeat received, if any."""
        if self.binding.heartbeat is None:
            return None
        return self.node.last_received.get(self.binding.heartbeat)

    def close(self) -> None:
        self.node.close()

"""The virtual BMS endpoint: a plant battery seen through a CAN protocol.

Which signal carries which battery quantity is data (a binding file next to the DBC's other
facts, ``virtual_devices/data/*_binding.yaml``), so another protocol is another pair of files,
not new code: a site names a DBC and :func:`binding_for` finds the binding written for it. The
endpoint reads the battery at send time and transmits through a :class:`CanNode`; it decides
nothing about the battery itself (protections, limits, contactors live in the plant). What it
does own is its side of the protocol: which frames it sends, and whether it still hears the
inverter's heartbeat.

Defects of the CAN interface (``data/defects/can.yaml``) change what is sent, never the plant:
a wrong cycle time, a message never sent, a signal value out of its DBC range, a SoC offset,
current limits derated on CAN only (``data/defects/current_limits.yaml``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
from cantools.database.can import Database

from harness.config.errors import ConfigErrors
from harness.config.yamlsrc import LineMap, load_yaml
from harness.transports.can import load_database
from virtual_devices.endpoints.can_node import CanNode, default_messages

DATA = Path(__file__).resolve().parents[1] / "data"
DEFAULT_BINDING = DATA / "pylontech_lv_binding.yaml"
IDENTITY_BYTES = 8
SOC_QUANTITY = "soc_pct"
"""The battery attribute a SoC signal is bound to (the ``soc_offset`` defect shifts it)."""
CURRENT_LIMIT_QUANTITIES = ("charge_current_limit_a", "discharge_current_limit_a")
"""Battery attributes of the advertised current limits (``current_limit_derating_ignored``)."""

Getter = Callable[[Any], float]
_SOURCES = ("quantity", "flag", "positive", "constant", "identity_byte", "cycle", "heartbeat_lost")
_DIRECTIONS = ("charging", "discharging")


@dataclass(frozen=True)
class BmsBinding:
    """A parsed binding file: DBC, what is sent, heartbeat and per-signal sources."""

    path: Path
    dbc: Path
    node: str | None
    """The DBC sender whose messages are sent; ``None``: the DBC names no sender, so the
    messages listed under ``messages:`` are what the BMS sends."""
    heartbeat: str | None
    current_quantity: str
    signals: dict[str, dict[str, dict[str, Any]]]
    """message -> signal -> source spec (one of ``_SOURCES`` plus options)."""
    lines: LineMap | None = field(default=None, compare=False, repr=False)

    def error(self, message: str, *loc: str) -> ConfigErrors:
        """A ConfigErrors naming this file and the line of ``loc`` (a key path)."""
        line = self.lines.line(loc) if self.lines else None
        return ConfigErrors.single(self.path, message, line, ".".join(loc))

    def sent_messages(self, db: Database) -> list[str]:
        """The messages this BMS transmits, in DBC order."""
        if self.node is not None:
            return default_messages(db, self.node)
        return [m.name for m in db.messages if m.name in self.signals]

    def current_limit_signals(self) -> list[tuple[str, str]]:
        """(message, signal) pairs that carry the pack's charge or discharge current limit."""
        return [
            (msg, sig)
            for msg, sigs in self.signals.items()
            for sig, spec in sigs.items()
            if spec.get("quantity") in CURRENT_LIMIT_QUANTITIES
        ]

    def soc_signals(self) -> list[tuple[str, str]]:
        """(message, signal) pairs that carry the battery's SoC."""
        return [
            (msg, sig)
            for msg, sigs in self.signals.items()
            for sig, spec in sigs.items()
            if spec.get("quantity") == SOC_QUANTITY
        ]


def load_binding(path: Path = DEFAULT_BINDING) -> BmsBinding:
    """Parse a binding file; every error names the file, the line and the field."""
    data, lines = load_yaml(path)

    def fail(message: str, *loc: str | int) -> ConfigErrors:
        return ConfigErrors.single(path, message, lines.line(loc), ".".join(map(str, loc)))

    if not isinstance(data, dict):
        raise fail("expected a mapping")
    for key in ("dbc", "messages"):
        if key not in data:
            raise fail(f"missing key {key!r}")
    messages = data["messages"]
    if not isinstance(messages, dict):
        raise fail("expected a mapping of message -> signal -> source", "messages")
    signals: dict[str, dict[str, dict[str, Any]]] = {}
    for msg_name, sigs in messages.items():
        if sigs is None:
            sigs = {}  # sent with every signal at its initial value
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
            if "cycle" in spec and not (isinstance(spec["cycle"], list) and spec["cycle"]):
                raise fail("cycle: expected a non-empty list of values", *where)
            signals[msg_name][sig_name] = dict(spec)
    return BmsBinding(
        path=path,
        dbc=(path.parent / str(data["dbc"])).resolve(),
        node=str(data["node"]) if data.get("node") else None,
        heartbeat=str(data["heartbeat"]) if data.get("heartbeat") else None,
        current_quantity=str(data.get("current_quantity", "current_a")),
        signals=signals,
        lines=lines,
    )


def binding_for(dbc: Path, folder: Path = DATA) -> BmsBinding:
    """The binding in ``folder`` written for ``dbc`` (a site names a DBC, not a binding)."""
    want = dbc.resolve()
    found = [b for b in map(load_binding, sorted(folder.glob("*_binding.yaml"))) if b.dbc == want]
    if len(found) != 1:
        names = ", ".join(b.path.name for b in found) or "none"
        raise ConfigErrors.single(
            dbc,
            f"a virtual BMS needs exactly one binding for this DBC in {folder}; found {names}",
        )
    return found[0]


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


@dataclass(frozen=True)
class CanDefects:
    """What the CAN defects of one BMS change (all empty: a healthy BMS)."""

    periods_s: dict[str, float] = field(default_factory=dict)
    """``cycle_time``: message -> period actually used, s."""
    stops_s: dict[str, float] = field(default_factory=dict)
    """``missing_message``: message -> site time from which it is no longer sent (0: never)."""
    forced: dict[tuple[str, str], float] = field(default_factory=dict)
    """``signal_out_of_range``: (message, signal) -> value always sent."""
    soc_offset_pct: float = 0.0
    """``soc_offset``: added to every SoC signal."""
    current_limit_scale: float = 1.0
    """``current_limit_derating_ignored``: every current-limit signal is the pack's limit times
    this (the inverter, which follows the pack's own limits, ignores the derating)."""

    @classmethod
    def from_applied(cls, applied: Mapping[str, Any]) -> CanDefects:
        """From ``virtual_devices.defects.defects_for(..., "bms")`` (kind -> applied defect)."""
        cycle = applied.get("cycle_time")
        missing = applied.get("missing_message")
        forced = applied.get("signal_out_of_range")
        offset = applied.get("soc_offset")
        derated = applied.get("current_limit_derating_ignored")
        return cls(
            periods_s={str(cycle.extra["message"]): cycle.value} if cycle else {},
            stops_s={str(missing.extra["message"]): missing.value} if missing else {},
            forced=(
                {(str(forced.extra["message"]), str(forced.extra["signal"])): forced.value}
                if forced
                else {}
            ),
            soc_offset_pct=offset.value if offset else 0.0,
            current_limit_scale=derated.value if derated else 1.0,
        )


def _constant(value: float) -> Getter:
    return lambda b: value


class VirtualBms:
    """A plant battery transmitted on a CAN bus according to a binding file.

    ``identity`` is the manufacturer string sent in ASCII bytes (truncated to the 8 bytes the
    protocol carries, NUL-padded). ``periods_s`` overrides DBC cycle times; ``messages`` narrows
    what is sent; ``defects`` injects the CAN interface defects. The endpoint owns the bus once
    handed over.
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
        defects: CanDefects | None = None,
    ) -> None:
        self.battery = battery
        self.binding = binding if isinstance(binding, BmsBinding) else load_binding(binding)
        self.db = load_database(self.binding.dbc)
        _check_against_db(self.binding, self.db)
        self.defects = defects or CanDefects()
        self._check_defects()
        raw = identity.encode("ascii")[:IDENTITY_BYTES]
        self.identity_bytes = raw.ljust(IDENTITY_BYTES, b"\0")
        self._charging = False  # direction while the current is zero: discharge (the safe guess)
        self._heartbeat_fed: float | None = None
        self._getters = {
            msg: {sig: self._getter(spec) for sig, spec in sigs.items()}
            for msg, sigs in self.binding.signals.items()
        }
        for msg, sig in self.binding.soc_signals():
            if self.defects.soc_offset_pct:
                self._getters[msg][sig] = self._offset(self._getters[msg][sig])
        for msg, sig in self.binding.current_limit_signals():
            if self.defects.current_limit_scale != 1.0:
                self._getters[msg][sig] = self._scaled(self._getters[msg][sig])
        for (msg, sig), value in self.defects.forced.items():
            self._getters.setdefault(msg, {})[sig] = _constant(value)
        sent = messages if messages is not None else self.binding.sent_messages(self.db)
        for name in set(self.defects.periods_s) | set(self.defects.stops_s):
            if name not in sent:
                raise ConfigErrors.single(
                    self.binding.dbc, f"defect names {name!r}, which this BMS does not send"
                )
        self.node = CanNode(
            bus,
            self.db,
            sent,
            self.values,
            periods_s=dict(periods_s or {}) | self.defects.periods_s,
            start_time=start_time,
            stops_s=self.defects.stops_s,
        )

    @classmethod
    def for_site(
        cls,
        bus: can.BusABC,
        battery: Any,
        identity: str,
        dbc: Path,
        defects: Mapping[str, Any] | None = None,
        start_time: float = 0.0,
    ) -> VirtualBms:
        """The BMS a site file describes: the binding written for its DBC, its defects applied.

        ``defects`` is ``virtual_devices.defects.defects_for(defects, node, "bms")``.
        """
        return cls(
            bus,
            battery,
            identity,
            start_time=start_time,
            binding=binding_for(dbc),
            defects=CanDefects.from_applied(defects or {}),
        )

    def _check_defects(self) -> None:
        """A defect must name what this BMS sends (a typo in a site file fails at start)."""
        db_names = {m.name: m for m in self.db.messages}
        named = set(self.defects.periods_s) | set(self.defects.stops_s)
        named |= {msg for msg, _ in self.defects.forced}
        for msg in sorted(named - set(db_names)):
            raise ConfigErrors.single(self.binding.dbc, f"defect names unknown message {msg!r}")
        for msg, sig in self.defects.forced:
            if sig not in {s.name for s in db_names[msg].signals}:
                raise ConfigErrors.single(
                    self.binding.dbc, f"defect names unknown signal {sig!r} of {msg!r}"
                )
        if self.defects.soc_offset_pct and not self.binding.soc_signals():
            raise self.binding.error(f"soc_offset: no signal is bound to {SOC_QUANTITY!r}")
        scale = self.defects.current_limit_scale
        if scale < 0 or (scale != 1.0 and not self.binding.current_limit_signals()):
            raise self.binding.error(
                f"current_limit_derating_ignored: needs a current-limit signal and a value >= 0"
                f" (got {scale:g})"
            )

    def _scaled(self, getter: Getter) -> Getter:
        scale = self.defects.current_limit_scale
        return lambda b: getter(b) * scale

    def _offset(self, getter: Getter) -> Getter:
        offset = self.defects.soc_offset_pct
        return lambda b: getter(b) + offset

    def _getter(self, spec: dict[str, Any]) -> Getter:
        if "quantity" in spec:
            name, scale = str(spec["quantity"]), float(spec.get("scale", 1.0))
            if "default" in spec:  # a battery model without this attribute reports the default
                default = float(spec["default"])
                return lambda b: float(getattr(b, name, default)) * scale
            return lambda b: float(getattr(b, name)) * scale
        if "flag" in spec:
            # A battery without the set (a model with no BMS warnings, say) has none of its flags.
            flag, within = str(spec["flag"]), str(spec.get("in", "protections"))
            direction = spec.get("direction")
            if direction is None:
                return lambda b: float(flag in getattr(b, within, ()))
            want_charging = direction == "charging"
            return lambda b: float(
                flag in getattr(b, within, ()) and self._is_charging() is want_charging
            )
        if "positive" in spec:
            name = str(spec["positive"])
            return lambda b: float(getattr(b, name) > 0)
        if "constant" in spec:
            value = float(spec["constant"])
            return lambda b: value
        if "cycle" in spec:
            values: Iterator[float] = itertools.cycle([float(v) for v in spec["cycle"]])
            return lambda b: next(values)
        if "heartbeat_lost" in spec:
            # The battery's own BMS supervises the heartbeat when it has one (the plant's);
            # else this endpoint does, with the binding's timeout.
            timeout = float(spec["heartbeat_lost"])
            return lambda b: float(
                bool(b.heartbeat_lost)
                if getattr(b, "bms", None) is not None
                else self.heartbeat_lost(timeout)
            )
        index = int(spec["identity_byte"])
        return lambda b: float(self.identity_bytes[index])

    def _is_charging(self) -> bool:
        current = float(getattr(self.battery, self.binding.current_quantity))
        if current != 0.0:
            self._charging = current > 0.0
        return self._charging

    def heartbeat_lost(self, timeout_s: float) -> bool:
        """The heartbeat came once and has not come for longer than ``timeout_s``.

        A BMS that never heard a heartbeat since it started does not call it lost: a bench
        without an inverter is not a failed inverter.
        """
        last = self.last_heartbeat
        return last is not None and self.node.sending_at - last > timeout_s

    def values(self, message: str) -> dict[str, float]:
        """Signal values of ``message`` from the battery's present state."""
        return {sig: get(self.battery) for sig, get in self._getters.get(message, {}).items()}

    def advance(self, until: float) -> None:
        """Bring the endpoint to site time ``until`` (a SimClock advancer); hand the battery's
        BMS each inverter heartbeat it received, for its supervision."""
        self.node.advance(until)
        last = self.last_heartbeat
        if last is not None and last != self._heartbeat_fed:
            self._heartbeat_fed = last
            feed = getattr(self.battery, "heartbeat", None)
            if callable(feed):
                feed(last)

    @property
    def last_heartbeat(self) -> float | None:
        """Site time of the last inverter heartbeat received, if any."""
        if self.binding.heartbeat is None:
            return None
        return self.node.last_received.get(self.binding.heartbeat)

    def close(self) -> None:
        self.node.close()

"""A BMS reached over CAN through a DBC: the ``dbc`` driver of the :class:`Bms` role.

Which signal carries which quantity is a small map file (``fixtures/maps/pylontech_lv_bms.yaml``
for the low-voltage protocol, ``fixtures/maps/hv_bms.yaml`` for a high-voltage layout), checked
against the site's DBC when the driver is built, so a typo fails before a run, not in the middle
of one. The map also says which messages the BMS must send: those of its ``node`` in the DBC, or
an explicit ``messages:`` list for a DBC whose messages name no sender.

The driver only reads what the transport has decoded: feeding the transport (``pump()`` after
each simulated step, or ``start()`` in real time) is the site's job. A value is only as good as
its age: one older than ``stale_after_s`` raises instead of being reported, because a silent BMS
must fail a run, never pass it on old data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
from cantools.database.can import Database, Signal

from harness.clock import Clock
from harness.config.errors import ConfigErrors
from harness.config.yamlsrc import LineMap, load_yaml
from harness.devices.roles import Bms, DeviceError, Identity
from harness.transports.can import CanTransport, capture

SignalRef = tuple[str, str]
"""(message name, signal name)."""


@dataclass(frozen=True)
class BmsMap:
    """A parsed BMS map: role quantities, alarms and identity bytes as DBC signal references."""

    node: str | None
    heartbeat: str | None
    quantities: dict[str, SignalRef]
    alarms: dict[str, SignalRef] = field(default_factory=dict)
    warnings: dict[str, SignalRef] = field(default_factory=dict)
    manufacturer: list[SignalRef] = field(default_factory=list)
    messages: list[str] | None = None
    """The messages the BMS must send, when the map lists them (else: its node's periodic ones)."""
    heartbeat_loss: SignalRef | None = None
    """The BMS's own flag for a lost heartbeat, if its protocol has one."""

    def required(self, db: Database) -> list[str]:
        """Messages the BMS must send: the map's list, else its node's messages with a cycle time.

        Event-driven messages (no cycle time) cannot be required within a window.
        """
        if self.messages is not None:
            return list(self.messages)
        return [m.name for m in db.messages if self.node in m.senders and m.cycle_time]


def load_bms_map(path: Path, db: Database) -> BmsMap:
    """Parse ``path`` and check every reference against ``db``; errors name file, line, field."""
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigErrors.single(path, "expected a mapping", 1)
    parser = _MapParser(path, lines, db)
    if "quantities" not in data:
        raise ConfigErrors.single(path, "missing key 'quantities'", 1, "quantities")
    if "node" not in data and "messages" not in data:
        raise ConfigErrors.single(
            path, "needs 'node' (the DBC sender) or 'messages' (what the BMS must send)", 1
        )
    node = str(data["node"]) if data.get("node") is not None else None
    if node is not None and not any(node in m.senders for m in db.messages):
        raise parser.error(f"no message of the DBC is sent by node {node!r}", "node")
    messages = _message_list(parser, data, db)
    heartbeat = data.get("heartbeat")
    if heartbeat is not None and str(heartbeat) not in {m.name for m in db.messages}:
        raise parser.error(f"message {heartbeat!r} is not in the DBC", "heartbeat")
    loss = data.get("heartbeat_loss")
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
        messages=messages,
        heartbeat_loss=parser.ref(loss, "heartbeat_loss") if loss is not None else None,
    )


def _message_list(parser: _MapParser, data: dict[str, object], db: Database) -> list[str] | None:
    raw = data.get("messages")
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise parser.error("expected a non-empty list of message names", "messages")
    known = {m.name for m in db.messages}
    for i, name in enumerate(raw):
        if str(name) not in known:
            raise parser.error(f"message {name!r} is not in the DBC", "messages", i)
    return [str(name) for name in raw]


def _initial(signal: Signal) -> float:
    """A signal's DBC initial value (GenSigStartValue), else 0, inside its declared range."""
    value = float(signal.initial) if isinstance(signal.initial, (int, float)) else 0.0
    if signal.minimum is not None:
        value = max(value, float(signal.minimum))
    if signal.maximum is not None:
        value = min(value, float(signal.maximum))
    return value


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
    are judged for ``required`` messages: by default the map's (:meth:`BmsMap.required`).
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
        self.heartbeats_sent = 0
        self.required = bms_map.required(transport.db) if required is None else required

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
        """Send the heartbeat the BMS supervises, stamped with site time.

        Signals not given carry their DBC initial value.
        """
        if self.map.heartbeat is None:
            raise DeviceError(f"{self.name}: the BMS map names no heartbeat message")
        message = self.transport.db.get_message_by_name(self.map.heartbeat)
        values = {s.name: _initial(s) for s in message.signals}
        values.update(signals or {})
        self.heartbeats_sent += 1
        try:
            self.transport.send(self.map.heartbeat, values, timestamp=self.now())
        except Exception as exc:
            raise DeviceError(f"{self.name}: cannot send {self.map.heartbeat}: {exc}") from exc

    def heartbeat_period(self) -> float | None:
        """The heartbeat's DBC cycle time, s (None: no heartbeat, or no cycle time)."""
        if self.map.heartbeat is None:
            return None
        return self.transport.expected_period(self.map.heartbeat)

    def hold(self, clock: Clock, seconds: float) -> None:
        """Let ``seconds`` of site time pass, sending the heartbeat on its cycle meanwhile.

        The harness stands in for the inverter the BMS supervises (the map's ``heartbeat``).
        Without a heartbeat, or without a cycle time for it, it only waits.
        """
        period = self.heartbeat_period()
        end = clock.now() + seconds
        if period is None:
            clock.sleep(seconds)
            return
        while (left := end - clock.now()) > 1e-9:
            self.send_heartbeat()
            clock.sleep(min(period, left))

    def heartbeat_lost(self) -> bool | None:
        """Whether the BMS says it lost the heartbeat (None: its protocol has no such flag)."""
        if self.map.heartbeat_loss is None:
            return None
        return self._read(self.map.heartbeat_loss) >= 0.5

    @property
    def database(self) -> Database:
        return self.transport.db

    def resolution(self, quantity: str) -> float:
        """The smallest step the BMS can report ``quantity`` in (its signal's DBC scale)."""
        try:
            message, signal = self.map.quantities[quantity]
        except KeyError:
            raise DeviceError(f"{self.name}: the BMS map binds no quantity {quantity!r}") from None
        sig = self.transport.db.get_message_by_name(message).get_signal_by_name(signal)
        return abs(float(sig.scale))

    def signal_of(self, quantity: str) -> SignalRef:
        """The (message, signal) the map binds ``quantity`` to."""
        try:
            return self.map.quantities[quantity]
        except KeyError:
            raise DeviceError(f"{self.name}: the BMS map binds no quantity {quantity!r}") from None

    @contextmanager
    def logging_frames(self, *messages: str) -> Iterator[FrameLog]:
        """Record every frame of ``messages`` on the BMS's bus, decoded and stamped on the site
        timebase, while the block runs (e.g. the limits frame and the inverter's heartbeat, to
        time a response from the frames themselves rather than from when they were read)."""
        log = FrameLog(self.transport.db, messages, self.transport.timebase)
        with self.listening(log):
            yield log

    @contextmanager
    def listening(self, listener: can.Listener) -> Iterator[can.Listener]:
        """Hand every frame of the BMS's bus to ``listener`` while the block runs."""
        self.transport.add_listener(listener)
        try:
            yield listener
        finally:
            self.transport.remove_listener(listener)

    def disconnect(self) -> None:
        self.transport.close()


class FrameLog(can.Listener):
    """Frames of chosen messages as they arrived: (site time, message, decoded signals)."""

    def __init__(
        self, db: Database, messages: tuple[str, ...], timebase: Callable[[float], float]
    ) -> None:
        self.timebase = timebase
        self._by_id = {
            (m.frame_id, m.is_extended_frame): m for m in db.messages if m.name in messages
        }
        missing = set(messages) - {m.name for m in self._by_id.values()}
        if missing:
            raise DeviceError(f"messages not in the DBC: {', '.join(sorted(missing))}")
        self.frames: list[tuple[float, str, dict[str, float]]] = []

    def on_message_received(self, msg: can.Message) -> None:
        message = self._by_id.get((msg.arbitration_id, msg.is_extended_id))
        if message is None or msg.is_error_frame or msg.is_remote_frame:
            return
        try:
            decoded = message.decode(bytes(msg.data), False)
        except Exception:  # a malformed frame is the conformance monitor's finding, not ours
            return
        values = {str(k): float(v) for k, v in dict(decoded).items() if isinstance(v, int | float)}
        self.frames.append((self.timebase(msg.timestamp), message.name, values))

    def times(self, message: str) -> list[float]:
        """Arrival times of ``message``."""
        return [t for t, name, _ in self.frames if name == message]

    def first(
        self, message: str, signal: str, test: Callable[[float], bool], since: float
    ) -> float | None:
        """Time of the first ``message`` at or after ``since`` whose ``signal`` passes ``test``."""
        for t, name, values in self.frames:
            if name == message and t >= since and signal in values and test(values[signal]):
                return t
        return None

    def to_json(self) -> list[dict[str, object]]:
        return [{"t": t, "message": name, "signals": values} for t, name, values in self.frames]


def capture_traffic(
    bench: Any, folder: Callable[[], Path]
) -> AbstractContextManager[dict[str, list[Path]]]:
    """Record the CAN traffic of every DBC BMS of ``bench`` (BLF and ASC) into ``folder()``.

    One pair of files per BMS bus, named ``<node>.bms``; see :func:`harness.transports.can.capture`.
    Anything that is not a bench with DBC BMSs (a test's own ``site`` fixture) records nothing,
    and ``folder`` is then never called.
    """
    nodes = getattr(bench, "nodes", None)
    clock = getattr(bench, "clock", None)
    if not isinstance(nodes, dict) or clock is None:
        return nullcontext({})
    buses = {
        f"{name}.bms": node.bms.transport
        for name, node in nodes.items()
        if isinstance(getattr(node, "bms", None), DbcBms)
    }
    if not buses:
        return nullcontext({})
    return capture(buses, folder(), clock)

"""Modbus client for synchronous scenarios, and a map-aware device on top of it.

:class:`ModbusClient` is a thin synchronous facade over pymodbus's asyncio clients (TCP, or RTU
on a serial line), running on a private :class:`LoopThread`: every call waits at most its
timeout, and whatever goes wrong comes back as :class:`ModbusError` naming the endpoint, with the
Modbus exception code when the device answered with one. It moves raw registers and coils only,
at most one Modbus request per call.

:class:`MappedDevice` speaks in points of a :class:`RegisterMap`: it scales with the device's
present scale factors (read together with the value, never cached), splits what exceeds one
request (125 registers read, 123 written), and holds every write to the write guard: a point the
map does not declare writable, or a value outside its declared range, is refused with
:class:`WriteRefused` before anything reaches the wire.

Every write passes the write gate (:mod:`harness.transports.guard`: audit log, dry run, the
safety supervisor's block) just before it would leave; a write the gate holds back is reported
as done without reaching the wire, and is not a transaction. The write guard of
:class:`MappedDevice` tells the gate about every write it refuses.

Every request a client makes is a :class:`Transaction` handed to its listeners (and to the
process-wide ones), so a run can keep the Modbus traffic it caused as evidence
(:class:`TransactionCsv`). Conformance probes that must send what a correct client never sends
(more than 125 registers in one read, 124 in one write) ask for it with ``enforce_limits=False``.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import struct
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from harness.transports import guard
from harness.transports.aioloop import LoopThread
from harness.transports.regmap import (
    Point,
    RangeError,
    RegisterMap,
    Value,
    check_limits,
    decode,
    encode,
)

log = logging.getLogger(__name__)

MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123
MAX_READ_COILS = 2000

EXCEPTION_TEXT = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

FC_READ_COILS = 1
FC_READ_HOLDING = 3
FC_WRITE_COIL = 5
FC_WRITE_REGISTERS = 16
FUNCTION_NAMES = {
    FC_READ_COILS: "read coils",
    FC_READ_HOLDING: "read holding registers",
    FC_WRITE_COIL: "write single coil",
    FC_WRITE_REGISTERS: "write multiple registers",
}

T = TypeVar("T")


class ModbusError(Exception):
    """A request failed: ``code`` is the Modbus exception code, None for timeouts and links."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WriteRefused(ValueError):
    """The write guard refused a write before it reached the wire."""


@dataclass(frozen=True)
class Transaction:
    """One Modbus request and what came of it, as a client's listeners see it.

    ``values`` are the registers (or coils, as 0/1) written, or those read back; ``exception``
    is the Modbus exception code the device answered; ``error`` says why there was no valid
    answer at all (timeout, lost link). Both are None for a successful request.
    """

    device: str
    endpoint: str
    unit: int
    function: int
    address: int
    count: int
    values: tuple[int, ...] = ()
    exception: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exception is None and self.error is None

    def outcome(self) -> str:
        """ "" for success, else the exception code and text, or the link error."""
        if self.exception is not None:
            return f"{self.exception} {EXCEPTION_TEXT.get(self.exception, 'unknown exception')}"
        return self.error or ""


Listener = Callable[[Transaction], None]


class _AnyCountReadHolding(ReadHoldingRegistersRequest):
    """Function 3 encoded without pymodbus's 1..125 check: a probe of how a device refuses an
    oversized read. Never used for ordinary reads."""

    def encode(self) -> bytes:
        self.verifyAddress()
        return struct.pack(">HH", self.address, self.count)


@dataclass(frozen=True)
class _Serial:
    device: str
    baudrate: int
    parity: str
    stopbits: int
    bytesize: int

    def __str__(self) -> str:
        return f"{self.device} ({self.baudrate} {self.bytesize}{self.parity}{self.stopbits})"


def _release(client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
    """Close whatever link ``client`` holds, even after it was closed once (pymodbus ignores a
    second ``close``; a connect that finished after it left a port open)."""
    transport = client.ctx.transport
    client.ctx.transport = None  # type: ignore[assignment]
    if transport is not None:
        transport.close()


class ModbusClient:
    """Synchronous Modbus master for one TCP endpoint or one serial line.

    ``timeout`` bounds each attempt of each request (and the connect); ``retries`` more attempts
    follow a silent device before the call fails. After a timeout the connection is dropped and
    re-opened by the next call, so a late answer cannot be taken for the next request's.
    """

    def __init__(
        self,
        host: str,
        port: int = 502,
        *,
        timeout: float = 1.0,
        retries: int = 1,
        loop: LoopThread | None = None,
    ) -> None:
        self._target: tuple[str, int] | _Serial = (host, port)
        self.timeout = timeout
        self.retries = retries
        self._own_loop = loop is None
        self._loop = loop
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lock = threading.Lock()
        self.label: str | None = None
        self._listeners: list[Listener] = []

    @classmethod
    def rtu(
        cls,
        device: str,
        *,
        baudrate: int = 19200,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout: float = 1.0,
        retries: int = 1,
        loop: LoopThread | None = None,
    ) -> ModbusClient:
        """A client for an RS-485 line (``device`` may also be a pyserial URL)."""
        client = cls("", 0, timeout=timeout, retries=retries, loop=loop)
        client._target = _Serial(device, baudrate, parity, stopbits, bytesize)
        return client

    @property
    def endpoint(self) -> str:
        """Where the client talks to, as error messages name it."""
        if isinstance(self._target, _Serial):
            return str(self._target)
        return f"{self._target[0]}:{self._target[1]}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    # -- listeners ----------------------------------------------------------------------------

    _global_listeners: ClassVar[list[Listener]] = []
    _global_lock: ClassVar[threading.Lock] = threading.Lock()

    def add_listener(self, listener: Listener) -> None:
        """Hand every transaction of this client to ``listener`` (called in the caller's thread)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    @classmethod
    def add_global_listener(cls, listener: Listener) -> None:
        """Hand every transaction of every client of this process to ``listener``."""
        with cls._global_lock:
            cls._global_listeners.append(listener)

    @classmethod
    def remove_global_listener(cls, listener: Listener) -> None:
        with cls._global_lock:
            cls._global_listeners.remove(listener)

    @classmethod
    def emit_global(cls, transaction: Transaction | Callable[[], Transaction]) -> None:
        """Hand a transaction made outside any client (a fleet poller's) to the global
        listeners. Given a callable, it builds the transaction only when someone listens: a
        fleet poll should not pay for a record nobody keeps."""
        with cls._global_lock:
            listeners = list(cls._global_listeners)
        if not listeners:
            return
        if callable(transaction):
            transaction = transaction()
        for listener in listeners:
            try:
                listener(transaction)
            except Exception:  # a broken recorder must not break the request it records
                log.exception("Modbus transaction listener %r failed", listener)

    def _emit(self, transaction: Transaction) -> None:
        with self._global_lock:
            listeners = [*self._global_listeners, *self._listeners]
        for listener in listeners:
            try:
                listener(transaction)
            except Exception:  # a broken recorder must not break the request it records
                log.exception("Modbus transaction listener %r failed", listener)

    def __enter__(self) -> ModbusClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- link -------------------------------------------------------------------------------

    def _make(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        target = self._target
        if isinstance(target, _Serial):
            return AsyncModbusSerialClient(
                target.device,
                framer=FramerType.RTU,
                baudrate=target.baudrate,
                parity=target.parity,
                stopbits=target.stopbits,
                bytesize=target.bytesize,
                timeout=self.timeout,
                retries=self.retries,
                reconnect_delay=0,
            )
        return AsyncModbusTcpClient(
            target[0], port=target[1], timeout=self.timeout, retries=self.retries, reconnect_delay=0
        )

    def connect(self) -> None:
        """Open the link; ModbusError naming the endpoint if it cannot be opened in time."""
        with self._lock:
            if self.connected:
                return
            if self._loop is None:
                self._loop = LoopThread(name=f"modbus-client {self.endpoint}")
            loop = self._loop

            async def _open() -> bool:
                if self._client is None:
                    self._client = self._make()
                client = self._client
                opening = asyncio.ensure_future(client.connect())
                try:
                    return bool(await asyncio.shield(opening))
                except asyncio.CancelledError:
                    # Given up on (a starved loop, a slow port): the open still finishes, and a
                    # serial port it opens must not stay locked by a client nobody holds.
                    opening.add_done_callback(lambda _: _release(client))
                    raise

            try:
                ok = loop.run(_open(), self.timeout + 1.0)
            except Exception as exc:  # OSError, serial errors, TimeoutError: all one failure
                self._drop()
                raise ModbusError(None, f"{self.endpoint}: cannot connect: {exc}") from exc
            if not ok:
                self._drop()
                why = (
                    "cannot open the port (missing, or held by another program)"
                    if isinstance(self._target, _Serial)
                    else f"cannot connect (refused or no answer in {self.timeout} s)"
                )
                raise ModbusError(None, f"{self.endpoint}: {why}")

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is not None and self._loop.running:

            async def _close() -> None:
                client.close()

            try:
                self._loop.run(_close(), 2.0)
            except Exception:  # closing a broken link must not mask the error being reported
                log.debug("closing %s failed", self.endpoint, exc_info=True)

    def close(self) -> None:
        """Close the link and, if the client owns it, its loop thread."""
        with self._lock:
            self._drop()
            if self._own_loop and self._loop is not None:
                self._loop.stop()
                self._loop = None

    # -- requests ---------------------------------------------------------------------------

    def _call(
        self,
        what: str,
        unit: int,
        request: Callable[[Any], Awaitable[Any]],
        tx: Transaction,
    ) -> Any:
        """Run one request; ``tx`` describes it for the listeners (outcome filled in here)."""
        try:
            response = self._request(what, unit, request)
        except ModbusError as exc:
            if exc.code is None:
                self._emit(replace(tx, error=exc.message))
            else:
                self._emit(replace(tx, exception=exc.code))
            raise
        read = getattr(response, "registers", None) if tx.function == FC_READ_HOLDING else None
        if tx.function == FC_READ_COILS:
            read = [int(b) for b in response.bits[: tx.count]]
        self._emit(tx if read is None else replace(tx, values=tuple(int(v) for v in read)))
        return response

    def _tx(
        self, function: int, address: int, count: int, unit: int, values: Sequence[int] = ()
    ) -> Transaction:
        return Transaction(
            self.label or self.endpoint,
            self.endpoint,
            unit,
            function,
            address,
            count,
            tuple(values),
        )

    def _request(self, what: str, unit: int, request: Callable[[Any], Awaitable[Any]]) -> Any:
        self.connect()
        client, loop = self._client, self._loop
        assert client is not None and loop is not None
        budget = self.timeout * (self.retries + 1) + 0.5

        async def _run() -> Any:
            return await asyncio.wait_for(request(client), budget)

        where = f"{self.endpoint} unit {unit}: {what}"
        try:
            response = loop.run(_run(), budget + 0.5)
        except TimeoutError:
            self._reset()
            raise ModbusError(None, f"{where}: no response within {budget:.1f} s") from None
        except ConnectionException as exc:
            self._reset()
            raise ModbusError(None, f"{where}: link lost ({exc.string})") from None
        except ModbusIOException:
            self._reset()
            raise ModbusError(
                None, f"{where}: no response within {self.timeout} s x {self.retries + 1} tries"
            ) from None
        except ModbusException as exc:
            self._reset()
            raise ModbusError(None, f"{where}: no valid response ({exc.string})") from None
        if response.isError():
            code = getattr(response, "exception_code", None)
            text = EXCEPTION_TEXT.get(code or 0, "unknown exception")
            raise ModbusError(code, f"{where}: exception {code} ({text})")
        return response

    def _reset(self) -> None:
        with self._lock:
            self._drop()

    def gate_target(self, unit: int) -> str:
        """How the write gate and the audit name this client's device ``unit``."""
        return f"{self.endpoint}/{unit}"

    def _permit(self, unit: int, what: str) -> bool:
        return guard.permit(guard.WriteRequest("modbus", self.gate_target(unit), what))

    def read_holding(
        self, address: int, count: int, unit: int = 1, *, enforce_limits: bool = True
    ) -> list[int]:
        """Read ``count`` (1..125) holding registers from ``address``.

        ``enforce_limits=False`` sends any count 1..65535 as it is: only for conformance probes
        that must see how a device refuses an oversized request.
        """
        if not 1 <= count <= (MAX_READ_REGISTERS if enforce_limits else 0xFFFF):
            raise ValueError(f"one request reads 1..{MAX_READ_REGISTERS} registers, not {count}")
        if count > MAX_READ_REGISTERS:

            async def request(c: Any) -> Any:
                pdu = _AnyCountReadHolding(address=address, count=count, dev_id=unit)
                return await c.execute(False, pdu)

        else:

            async def request(c: Any) -> Any:
                return await c.read_holding_registers(address, count=count, device_id=unit)

        response = self._call(
            f"read {count} registers at {address}",
            unit,
            request,
            self._tx(FC_READ_HOLDING, address, count, unit),
        )
        regs = list(response.registers)
        if len(regs) != count:
            raise ModbusError(
                None,
                f"{self.endpoint} unit {unit}: asked {count} registers at "
                f"{address}, got {len(regs)}",
            )
        return regs

    def write_registers(
        self, address: int, values: Sequence[int], unit: int = 1, *, enforce_limits: bool = True
    ) -> None:
        """Write 1..123 holding registers from ``address`` (function 16).

        Raw: no write guard. ``enforce_limits=False`` lets more than 123 registers go out, only
        for conformance probes of how a device refuses an oversized write.
        """
        if not 1 <= len(values) <= (MAX_WRITE_REGISTERS if enforce_limits else 0x7FFF):
            raise ValueError(
                f"one request writes 1..{MAX_WRITE_REGISTERS} registers, not {len(values)}"
            )
        regs = [int(v) for v in values]
        if any(not 0 <= v <= 0xFFFF for v in regs):
            raise ValueError(f"register values must be 0..65535: {regs}")
        if not self._permit(unit, f"write_registers {address} {regs}"):
            return
        self._call(
            f"write {len(regs)} registers at {address}",
            unit,
            lambda c: c.write_registers(address, regs, device_id=unit),
            self._tx(FC_WRITE_REGISTERS, address, len(regs), unit, regs),
        )

    def read_coils(self, address: int, count: int, unit: int = 1) -> list[bool]:
        """Read ``count`` (1..2000) coils from ``address``."""
        if not 1 <= count <= MAX_READ_COILS:
            raise ValueError(f"one request reads 1..{MAX_READ_COILS} coils, not {count}")
        response = self._call(
            f"read {count} coils at {address}",
            unit,
            lambda c: c.read_coils(address, count=count, device_id=unit),
            self._tx(FC_READ_COILS, address, count, unit),
        )
        return [bool(b) for b in response.bits[:count]]

    def write_coil(self, address: int, value: bool, unit: int = 1) -> None:
        """Write one coil (function 5)."""
        if not self._permit(unit, f"write_coil {address} {int(bool(value))}"):
            return
        self._call(
            f"write coil {address} = {int(value)}",
            unit,
            lambda c: c.write_coil(address, bool(value), device_id=unit),
            self._tx(FC_WRITE_COIL, address, 1, unit, [int(bool(value))]),
        )


class TransactionCsv:
    """Appends every Modbus transaction of this process to a CSV file, while entered.

    Columns: time (seconds on the site clock given as ``now``), device, endpoint, unit,
    function (code), request (its name), address, count, values (space-separated), exception
    (code and text, or the link error; empty on success). A file that exists is appended to.
    """

    COLUMNS = (
        "time",
        "device",
        "endpoint",
        "unit",
        "function",
        "request",
        "address",
        "count",
        "values",
        "exception",
    )

    def __init__(self, path: str | Path, now: Callable[[], float]) -> None:
        self.path = Path(path)
        self.now = now
        self.rows = 0
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        self._writer: Any = None

    def open(self) -> TransactionCsv:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.COLUMNS)
        ModbusClient.add_global_listener(self)
        return self

    def close(self) -> None:
        if self._fh is None:
            return
        ModbusClient.remove_global_listener(self)
        with self._lock:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> TransactionCsv:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, tx: Transaction) -> None:
        t = self.now()
        with self._lock:
            if self._fh is None:
                return
            self._writer.writerow(
                (
                    f"{t:.6f}",
                    tx.device,
                    tx.endpoint,
                    tx.unit,
                    tx.function,
                    FUNCTION_NAMES.get(tx.function, ""),
                    tx.address,
                    tx.count,
                    " ".join(str(v) for v in tx.values),
                    tx.outcome(),
                )
            )
            self.rows += 1


class MappedDevice:
    """One device (a unit behind a client) read and written by point name.

    Nothing is cached: every read fetches the point's scale factor with it (in the same request
    when the map allows), so a device that changes a scale factor is never misread.
    """

    def __init__(self, client: ModbusClient, regmap: RegisterMap, unit: int = 1) -> None:
        self.client = client
        self.regmap = regmap
        self.unit = unit

    def __repr__(self) -> str:
        return f"MappedDevice({self.client.endpoint} unit {self.unit}, {self.regmap.name})"

    # -- raw, split ------------------------------------------------------------------------

    def read_registers(self, address: int, count: int) -> list[int]:
        """Read any number of registers, in requests of at most 125 that never cut a point."""
        regs: list[int] = []
        for start, n in self.regmap.split(address, count, MAX_READ_REGISTERS):
            regs.extend(self.client.read_holding(start, n, self.unit))
        return regs

    def write_registers(self, address: int, values: Sequence[int]) -> None:
        """Write any number of registers, in requests of at most 123 that never cut a point.

        Raw: no write guard. Points are written through :meth:`write` / :meth:`write_many`.
        """
        offset = 0
        for start, n in self.regmap.split(address, len(values), MAX_WRITE_REGISTERS):
            self.client.write_registers(start, list(values[offset : offset + n]), self.unit)
            offset += n

    # -- reads -----------------------------------------------------------------------------

    def read(self, name: str) -> Value:
        """Present value of one point, scaled by the device's present scale factor."""
        return self.read_many([name])[name]

    def read_many(self, names: Iterable[str]) -> dict[str, Value]:
        """Present values of several points, in as few requests as the map allows."""
        wanted = [self.regmap.point(n) for n in names]
        needed = list(wanted)
        for p in wanted:
            sf_point = self.regmap.sf_point(p)
            if sf_point is not None:
                needed.append(sf_point)
        raw: dict[str, list[int]] = {}
        for span in self.regmap.spans(needed, MAX_READ_REGISTERS):
            if span.table == "coil":
                bits = self.client.read_coils(span.address, span.count, self.unit)
                for p in span.points:
                    raw[p.name] = [int(bits[p.address - span.address])]
                continue
            regs = self.client.read_holding(span.address, span.count, self.unit)
            for p in span.points:
                raw[p.name] = regs[p.address - span.address : p.end - span.address]
        sfs = {p.name: decode(p, raw[p.name]) for p in needed if p.type == "sunssf"}
        values: dict[str, Value] = {}
        for p in wanted:
            sf = sfs.get(p.sf) if isinstance(p.sf, str) else None
            values[p.name] = decode(p, raw[p.name], None if sf is None else int(sf))
        return values

    def read_block(self, key: str | int) -> dict[str, Value]:
        """Every point of a SunSpec model (by group name or model id) or of a group prefix."""
        block = self.regmap.block(key)
        regs = self.read_registers(block.address, block.size)
        outside = {
            p.sf
            for p in self.regmap.at(block.address, block.size)
            if isinstance(p.sf, str)
            and not block.address <= self.regmap.point(p.sf).address < block.end
        }
        extra = {
            name: None if value is None else int(float(value))
            for name, value in (self.read_many(sorted(outside)) if outside else {}).items()
        }
        return self.regmap.decode_registers(block.address, regs, extra)

    # -- writes ----------------------------------------------------------------------------

    def check_write(self, name: str, value: Value | bool) -> Point:
        """The write guard: the point if ``value`` may be written to it, else WriteRefused
        (which the write gate hears of, so the audit lists refused writes too)."""
        try:
            return self._check_write(name, value)
        except WriteRefused as exc:
            raise self._refused(name, value, str(exc)) from None

    def _refused(self, name: str, value: Value | bool, message: str) -> WriteRefused:
        """Tell the write gate about a refused write; the error to raise."""
        request = guard.WriteRequest(
            "modbus", self.client.gate_target(self.unit), f"write {name} = {value!r}"
        )
        guard.refused(request, message)
        return WriteRefused(message)

    def _check_write(self, name: str, value: Value | bool) -> Point:
        try:
            point = self.regmap.point(name)
        except KeyError as exc:
            raise WriteRefused(f"refused to write {name}: {exc.args[0]}") from None
        if not point.writable:
            raise WriteRefused(
                f"refused to write {name}: the map {self.regmap.name} declares it read-only"
            )
        if value is None:
            raise WriteRefused(f"refused to write {name}: no value given")
        number: Value | bool = value
        if isinstance(value, str) and point.symbols:
            if value not in point.symbols:
                raise WriteRefused(
                    f"refused to write {name} = {value!r}: not one of {', '.join(point.symbols)}"
                )
            number = float(point.symbols[value])
        try:
            check_limits(point, number)
        except RangeError:
            raise WriteRefused(
                f"refused to write {name} = {value!r}: outside the declared range "
                f"{point.limits_text()}"
            ) from None
        return point

    def write(self, name: str, value: Value | bool) -> None:
        """Write one point through the write guard."""
        self.write_many({name: value})

    def write_many(self, values: Mapping[str, Value | bool]) -> None:
        """Write several points; all pass the guard or none is written.

        Adjacent points go out in one request (split at 123 registers on point boundaries).
        """
        points = {name: self.check_write(name, v) for name, v in values.items()}
        sf_names = sorted({p.sf for p in points.values() if isinstance(p.sf, str)})
        sfs = self.read_many(sf_names) if sf_names else {}
        encoded: list[tuple[Point, list[int]]] = []
        for name, point in points.items():
            sf = sfs.get(point.sf) if isinstance(point.sf, str) else None
            if isinstance(point.sf, str) and sf is None:
                raise self._refused(
                    name,
                    values[name],
                    f"refused to write {name}: its scale factor {point.sf} is not implemented",
                )
            try:
                regs = encode(point, values[name], None if sf is None else int(float(sf)))
            except ValueError as exc:
                raise self._refused(name, values[name], f"refused to write: {exc}") from None
            encoded.append((point, regs))
        for point, _regs in sorted(encoded, key=lambda e: (e[0].table, e[0].address)):
            log.info("%s: write %s = %r", self, point.name, values[point.name])
        for table_run in self._runs(encoded):
            first = table_run[0][0]
            if first.table == "coil":
                for point, regs in table_run:
                    self.client.write_coil(point.address, bool(regs[0]), self.unit)
                continue
            regs = [r for _, rs in table_run for r in rs]
            self.write_registers(first.address, regs)

    @staticmethod
    def _runs(
        encoded: list[tuple[Point, list[int]]],
    ) -> list[list[tuple[Point, list[int]]]]:
        ordered = sorted(encoded, key=lambda e: (e[0].table, e[0].address))
        runs: list[list[tuple[Point, list[int]]]] = []
        for item in ordered:
            prev = runs[-1][-1][0] if runs else None
            if prev is not None and prev.table == item[0].table and prev.end == item[0].address:
                runs[-1].append(item)
            else:
                runs.append([item])
        return runs

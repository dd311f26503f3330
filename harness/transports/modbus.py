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
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

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
class _Serial:
    device: str
    baudrate: int
    parity: str
    stopbits: int
    bytesize: int

    def __str__(self) -> str:
        return f"{self.device} ({self.baudrate} {self.bytesize}{self.parity}{self.stopbits})"


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
                return bool(await self._client.connect())

            try:
                ok = loop.run(_open(), self.timeout + 1.0)
            except Exception as exc:  # OSError, serial errors, TimeoutError: all one failure
                self._drop()
                raise ModbusError(None, f"{self.endpoint}: cannot connect: {exc}") from exc
            if not ok:
                self._drop()
                raise ModbusError(
                    None,
                    f"{self.endpoint}: cannot connect (refused or no answer in {self.timeout} s)",
                )

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

    def _call(self, what: str, unit: int, request: Callable[[Any], Awaitable[Any]]) -> Any:
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

    def read_holding(self, address: int, count: int, unit: int = 1) -> list[int]:
        """Read ``count`` (1..125) holding registers from ``address``."""
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ValueError(f"one request reads 1..{MAX_READ_REGISTERS} registers, not {count}")
        response = self._call(
            f"read {count} registers at {address}",
            unit,
            lambda c: c.read_holding_registers(address, count=count, device_id=unit),
        )
        regs = list(response.registers)
        if len(regs) != count:
            raise ModbusError(
                None,
                f"{self.endpoint} unit {unit}: asked {count} registers at "
                f"{address}, got {len(regs)}",
            )
        return regs

    def write_registers(self, address: int, values: Sequence[int], unit: int = 1) -> None:
        """Write 1..123 holding registers from ``address`` (function 16)."""
        if not 1 <= len(values) <= MAX_WRITE_REGISTERS:
            raise ValueError(
                f"one request writes 1..{MAX_WRITE_REGISTERS} registers, not {len(values)}"
            )
        regs = [int(v) for v in values]
        if any(not 0 <= v <= 0xFFFF for v in regs):
            raise ValueError(f"register values must be 0..65535: {regs}")
        self._call(
            f"write {len(regs)} registers at {address}",
            unit,
            lambda c: c.write_registers(address, regs, device_id=unit),
        )

    def read_coils(self, address: int, count: int, unit: int = 1) -> list[bool]:
        """Read ``count`` (1..2000) coils from ``address``."""
        if not 1 <= count <= MAX_READ_COILS:
            raise ValueError(f"one request reads 1..{MAX_READ_COILS} coils, not {count}")
        response = self._call(
            f"read {count} coils at {address}",
            unit,
            lambda c: c.read_coils(address, count=count, device_id=unit),
        )
        return [bool(b) for b in response.bits[:count]]

    def write_coil(self, address: int, value: bool, unit: int = 1) -> None:
        """Write one coil (function 5)."""
        self._call(
            f"write coil {address} = {int(value)}",
            unit,
            lambda c: c.write_coil(address, bool(value), device_id=unit),
        )


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
        """The write guard: the point if ``value`` may be written to it, else WriteRefused."""
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
                raise WriteRefused(
                    f"refused to write {name}: its scale factor {point.sf} is not implemented"
                )
            try:
                regs = encode(point, values[name], None if sf is None else int(float(sf)))
            except ValueError as exc:
                raise WriteRefused(f"refused to write: {exc}") from None
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

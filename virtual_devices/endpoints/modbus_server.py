"""A real Modbus TCP server that exposes a virtual device through a register map.

The registers are not a second copy of the device's state: on every read the server asks the
provider for the present point values and encodes them with the shared codec
(:mod:`harness.transports.regmap`), and on every write it decodes the written points and hands
them to the provider, all under the plant's lock, so a client sees the plant between two steps,
never in the middle of one.

Errors a real device would answer, answered the Modbus way:

- an address no point covers, a coil or register the map does not declare writable, a point the
  provider does not accept writes to (it raises KeyError): ILLEGAL_ADDRESS;
- a value outside the point's declared range or symbols, or one the provider rejects (it raises
  ValueError): ILLEGAL_VALUE, and nothing changes;
- discrete inputs and input registers are not served: ILLEGAL_ADDRESS;
- a read of more than 125 registers or 2000 coils (or none): ILLEGAL_VALUE, as the Modbus
  application protocol orders (quantity is checked before address); pymodbus alone cannot
  decode such a request and answers with a malformed exception, so this server decodes
  functions 1 and 3 itself;
- a coil read that covers any coil the map does not declare: ILLEGAL_ADDRESS (pymodbus keeps
  coils in 16-bit words and would serve the neighbours of a mapped coil).

A provider may also offer ``raw_overrides()``: registers served as they are instead of encoding
a point's value, for defects that publish what the codec would refuse (a scale factor outside
-10..10). The device's own view (what it decodes written values with) is unchanged.

Built on pymodbus's SimDevice/SimData with an ``action`` callback (pymodbus 3.16 deprecates the
datastore contexts).
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from harness.transports.aioloop import LoopThread
from harness.transports.regmap import Point, RegisterMap, Value, check_limits, decode, encode

log = logging.getLogger(__name__)

_COIL_FUNCTIONS = {1, 5, 15}
_UNSERVED_FUNCTIONS = {2, 4}  # discrete inputs, input registers


class PointProvider(Protocol):
    """What a virtual device offers a Modbus server, point by point (names of the map).

    A provider may also define ``on_request()``: called (under the lock) for every request
    addressed to it, before it is served, e.g. for a communication-loss supervision."""

    def read_points(self) -> Mapping[str, Value]:
        """Present values (scale factors included, by their point names); absent = unimplemented.

        Constants of the map (model ID and length, the SunSpec marker) need not be provided.
        """
        ...

    def write_point(self, name: str, value: Value) -> None:
        """Apply a written value. Raise ValueError to reject it without any change of state,
        KeyError if this device does not accept writes to that point."""
        ...


class _ReadHoldingAnyCount(ReadHoldingRegistersRequest):
    """Function 3 as this server decodes it: any quantity, refused with ILLEGAL_VALUE outside
    1..125 (Modbus Application Protocol 1.1b3, 6.3) instead of failing to decode the frame."""

    def decode(self, data: bytes) -> None:
        self.address, self.count = struct.unpack(">HH", data[:4])

    async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
        if not 1 <= self.count <= self.MAX_COUNT:
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
        response: ModbusPDU = await super().datastore_update(context, device_id)
        return response


def _read_coils_class(mapped: Mapping[int, set[int]]) -> type[ReadCoilsRequest]:
    """Function 1 as a server of the coils ``mapped`` (by unit) decodes it (module docstring)."""

    class _ReadCoils(ReadCoilsRequest):
        def decode(self, data: bytes) -> None:
            self.address, self.count = struct.unpack(">HH", data[:4])

        async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
            if not 1 <= self.count <= self.MAX_COUNT:
                return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
            coils = mapped.get(device_id)  # None: not a unit here, the datastore answers
            if coils is not None and any(
                a not in coils for a in range(self.address, self.address + self.count)
            ):
                return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_ADDRESS)
            response: ModbusPDU = await super().datastore_update(context, device_id)
            return response

    return _ReadCoils


def request_decoders(endpoints: Sequence[ModbusServerEndpoint]) -> list[type[ModbusPDU]]:
    """The request decoders a server of these endpoints' units needs (functions 1 and 3)."""
    coils = {e.unit: {p.address for p in e.regmap.points("coil")} for e in endpoints}
    return [_ReadHoldingAnyCount, _read_coils_class(coils)]


class ModbusServerEndpoint:
    """Serves ``regmap`` as unit ``unit`` on 127.0.0.1, on an OS-chosen port after start()."""

    def __init__(
        self,
        regmap: RegisterMap,
        unit: int,
        provider: PointProvider,
        lock: threading.RLock,
        loop: LoopThread,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        framer: Literal["socket", "rtu"] = "socket",
    ) -> None:
        self.regmap = regmap
        self.unit = unit
        self.provider = provider
        self.lock = lock
        self.loop = loop
        self.host = host
        self._requested_port = port
        self._framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self._server: ModbusTcpServer | None = None
        self._port: int | None = None
        self._holding = regmap.points("holding")
        self._coils = regmap.points("coil")
        self._sunssf = [p for p in self._holding if p.type == "sunssf"]
        self._encoded: dict[tuple[str, Value, int | None], list[int]] = {}

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (only once started)."""
        if self._port is None:
            raise RuntimeError(f"Modbus endpoint for {self.regmap.name} is not started")
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            return
        device = self.sim_device()

        async def _start() -> ModbusTcpServer:
            server = ModbusTcpServer(
                device,
                framer=self._framer,
                address=(self.host, self._requested_port),
                custom_pdu=request_decoders([self]),
            )
            await server.serve_forever(background=True)
            return server

        server = self.loop.run(_start(), timeout)
        listener = server.transport
        sockets = getattr(listener, "sockets", None)
        if not sockets:
            raise RuntimeError(f"Modbus endpoint for {self.regmap.name} is not listening")
        self._server = server
        self._port = int(sockets[0].getsockname()[1])
        log.info("%s unit %d serving on %s:%d", self.regmap.name, self.unit, self.host, self._port)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection; the port is free when this returns."""
        server, self._server = self._server, None
        self._port = None
        if server is None or not self.loop.running:
            return
        listener = server.transport

        async def _stop() -> None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            if isinstance(listener, asyncio.AbstractServer):
                await listener.wait_closed()

        self.loop.run(_stop(), timeout)

    def __enter__(self) -> ModbusServerEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- register image ---------------------------------------------------------------------

    def sim_device(self) -> SimDevice:
        """This unit as pymodbus serves it (an RS-485 line serves several: rtu_line.py)."""
        holding: list[SimData] = []
        run: list[Point] = []
        for p in [*self._holding, None]:
            if run and (p is None or p.address != run[-1].end or p.writable != run[0].writable):
                start = run[0].address
                holding.append(
                    SimData(
                        address=start,
                        count=run[-1].end - start,
                        values=0,
                        datatype=DataType.REGISTERS,
                        readonly=not run[0].writable,
                    )
                )
                run = []
            if p is not None:
                run.append(p)
        coils: list[SimData] = []
        coil_runs: list[list[Point]] = []
        for p in self._coils:
            if coil_runs and coil_runs[-1][-1].end == p.address:
                coil_runs[-1].append(p)
            else:
                coil_runs.append([p])
        for members in coil_runs:
            coils.append(
                SimData(
                    address=members[0].address,
                    values=[False] * len(members),
                    datatype=DataType.BITS,
                )
            )
        # pymodbus wants all four tables; unserved ones get a placeholder the action refuses.
        placeholder_bits = SimData(address=0, values=[False], datatype=DataType.BITS)
        return SimDevice(
            id=self.unit,
            simdata=(
                coils or [placeholder_bits],
                [SimData(address=0, values=[False], datatype=DataType.BITS)],
                holding or [SimData(address=0, datatype=DataType.INVALID)],
                [SimData(address=0, datatype=DataType.INVALID)],
            ),
            action=self._action,
        )

    def _values(self, points: Sequence[Point] | None = None) -> dict[str, Value]:
        """Present values of ``points`` and of every scale factor (default: every point)."""
        provided = self.provider.read_points()
        values: dict[str, Value] = {}
        for p in self.regmap if points is None else [*points, *self._sunssf]:
            value = provided.get(p.name, p.value)
            # A quantity the device cannot measure (NaN) is served as "not implemented".
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            values[p.name] = value
        return values

    def _sfs(self, values: Mapping[str, Value]) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for p in self._sunssf:
            v = values.get(p.name)
            out[p.name] = None if v is None or isinstance(v, str) else int(v)
        return out

    def _encode(self, point: Point, value: Value, sf: int | None) -> list[int]:
        """``encode`` remembered per (point, value, scale factor): most points of a device
        (nameplate, settings, states) hold still between two polls, and the codec costs more
        than the request's other work. Bounded: the memo starts over past 8192 entries."""
        key = (point.name, value, sf)
        regs = self._encoded.get(key)
        if regs is None:
            if len(self._encoded) >= 8192:
                self._encoded.clear()
            regs = self._encoded[key] = encode(point, value, sf)
        return regs

    def _refresh(self, points: list[Point], start: int, registers: list[int]) -> dict[str, Value]:
        """Encode ``points`` into ``registers`` (read from ``start``) from the provider's present
        values; returns the values read (``points`` and the scale factors)."""
        values = self._values(points)
        sfs = self._sfs(values)
        raw_overrides = getattr(self.provider, "raw_overrides", None)
        overrides: Mapping[str, Sequence[int]] = raw_overrides() if raw_overrides else {}
        for p in points:
            if p.name in overrides:
                regs = [int(r) & 0xFFFF for r in overrides[p.name]]
                if len(regs) != p.size:
                    raise ValueError(f"{p.name}: raw override of {len(regs)} registers")
            else:
                sf = sfs.get(p.sf) if isinstance(p.sf, str) else None
                regs = self._encode(p, values[p.name], sf)
            registers[p.address - start : p.end - start] = regs
        return values

    # -- requests ---------------------------------------------------------------------------

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code in _UNSERVED_FUNCTIONS:
            return ExcCodes.ILLEGAL_ADDRESS
        try:
            with self.lock:
                heard = getattr(self.provider, "on_request", None)
                if heard is not None:  # e.g. an inverter's communication-loss supervision
                    heard()
                if function_code in _COIL_FUNCTIONS:
                    return self._coil_request(start_address, address, registers, set_values)
                return self._register_request(start_address, address, count, registers, set_values)
        except Exception:
            log.exception(
                "%s: request fc=%d at %d failed", self.regmap.name, function_code, address
            )
            return ExcCodes.DEVICE_FAILURE

    def _register_request(
        self,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is None:
            self._refresh(self.regmap.at(address, count), start, registers)
            return None
        written = [int(v) for v in set_values]
        touched = self.regmap.at(address, len(written))
        if not touched or any(not p.writable for p in touched):
            return ExcCodes.ILLEGAL_ADDRESS
        values = self._refresh(touched, start, registers)
        sfs = self._sfs(values)
        image = list(registers)
        image[address - start : address - start + len(written)] = written
        decoded: list[tuple[Point, Value]] = []
        for p in touched:
            sf = sfs.get(p.sf) if isinstance(p.sf, str) else None
            value = decode(p, image[p.address - start : p.end - start], sf)
            if value is None or not self._acceptable(p, value):
                return ExcCodes.ILLEGAL_VALUE
            decoded.append((p, value))
        return self._apply(decoded)

    def _coil_request(
        self,
        start_word: int,
        address: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if not self._coils:
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is None:
            values = self._values()
            for p in self._coils:
                word, bit = p.address // 16 - start_word, p.address % 16
                if values[p.name]:
                    registers[word] |= 1 << bit
                else:
                    registers[word] &= ~(1 << bit) & 0xFFFF
            return None
        decoded: list[tuple[Point, Value]] = []
        for i, bit_value in enumerate(set_values):
            found = self.regmap.at(address + i, 1, "coil")
            if not found or not found[0].writable:
                return ExcCodes.ILLEGAL_ADDRESS
            decoded.append((found[0], 1.0 if bit_value else 0.0))
        return self._apply(decoded)

    @staticmethod
    def _acceptable(point: Point, value: Value) -> bool:
        if point.symbols and value not in point.symbols.values():
            return False
        try:
            check_limits(point, value)
        except ValueError:
            return False
        return True

    def _apply(self, decoded: list[tuple[Point, Value]]) -> ExcCodes | None:
        """Hand the written points to the provider in address order.

        A request that writes several points is applied point by point: the first one rejected
        stops the rest (each point is checked against the map before any is applied).
        """
        for point, value in decoded:
            try:
                self.provider.write_point(point.name, value)
            except KeyError:
                log.info("%s: writes to %s are not supported", self.regmap.name, point.name)
                return ExcCodes.ILLEGAL_ADDRESS
            except ValueError as exc:
                log.info("%s: rejected %s = %r: %s", self.regmap.name, point.name, value, exc)
                return ExcCodes.ILLEGAL_VALUE
        return None


class ServedUnit:
    """A device model served as one Modbus unit by ``self.server`` (set in its ``__init__``):
    the lifecycle every such endpoint shares."""

    server: ModbusServerEndpoint

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

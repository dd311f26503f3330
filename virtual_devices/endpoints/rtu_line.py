"""An RS-485 line of virtual devices: one Modbus RTU server on a serial port answering for the
units of one or more :class:`ModbusServerEndpoint` (each keeps its own map, provider and lock).

The endpoints are not started themselves (that would open a TCP listener each); the line serves
their pymodbus devices (:meth:`ModbusServerEndpoint.sim_device`) with the same request decoders,
so every answer, exception included, is the one the endpoint gives over TCP.

A request for a unit that is not on the line gets no answer at all, as on a real bus where no
slave has that address (pymodbus alone would answer it with SERVER DEVICE FAILURE): the master
times out. Unit 0 (broadcast) is not served either, so a broadcast write changes nothing.

The port is any path or URL pyserial opens, e.g. one end of a socat pty pair in CI
(tests/serial_pair.py) or a real USB-RS-485 adapter on a bench PC.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.server.requesthandler import ServerRequestHandler

from harness.transports.aioloop import LoopThread
from virtual_devices.endpoints.modbus_server import ModbusServerEndpoint, request_decoders

log = logging.getLogger(__name__)

MIN_UNIT, MAX_UNIT = 1, 247  # Modbus over serial line V1.02, 2.2: individual slave addresses


class _LineHandler(ServerRequestHandler):
    """Answers only what is addressed to a unit of the line; anything else is left unanswered
    before pymodbus decides (its table would fall back to unit 0, and some functions, such as a
    read with a bad count, are answered without looking at the unit at all)."""

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu is not None and pdu.dev_id not in self.server.context.device_ids():
            log.debug("RTU line: no unit %d here, request left unanswered", pdu.dev_id)
            return
        await super().handle_request()  # type: ignore[no-untyped-call]


class _LineServer(ModbusSerialServer):
    def callback_new_connection(self) -> _LineHandler:
        tracers = (self.trace_packet, self.trace_pdu, self.trace_connect)
        return _LineHandler(self, *tracers)  # type: ignore[no-untyped-call]


class RtuLine:
    """Serves the units of ``endpoints`` as Modbus RTU slaves on the serial port ``port``."""

    def __init__(
        self,
        port: str,
        endpoints: Sequence[ModbusServerEndpoint],
        loop: LoopThread,
        *,
        baudrate: int = 19200,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
    ) -> None:
        units = [e.unit for e in endpoints]
        if not units:
            raise ValueError(f"RTU line {port}: no device to serve")
        if len(set(units)) != len(units):
            raise ValueError(f"RTU line {port}: unit ids must differ, got {units}")
        if any(not MIN_UNIT <= u <= MAX_UNIT for u in units):
            raise ValueError(f"RTU line {port}: units are {MIN_UNIT}..{MAX_UNIT}, got {units}")
        self.port = port
        self.endpoints = list(endpoints)
        self.loop = loop
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize
        self._server: ModbusSerialServer | None = None

    @property
    def units(self) -> list[int]:
        return [e.unit for e in self.endpoints]

    @property
    def running(self) -> bool:
        return self._server is not None

    def __str__(self) -> str:
        settings = f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"
        return f"{self.port} ({settings}) units {self.units}"

    def start(self, timeout: float = 5.0) -> None:
        """Open the port and answer requests; RuntimeError naming the port if it cannot."""
        if self._server is not None:
            return
        devices = [e.sim_device() for e in self.endpoints]

        async def _start() -> ModbusSerialServer:
            server = _LineServer(
                devices,
                framer=FramerType.RTU,
                port=self.port,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stopbits,
                bytesize=self.bytesize,
                custom_pdu=request_decoders(self.endpoints),
            )
            await server.serve_forever(background=True)
            return server

        try:
            self._server = self.loop.run(_start(), timeout)
        except Exception as exc:  # OSError, termios.error, pymodbus's RuntimeError: one failure
            raise RuntimeError(f"RTU line {self}: cannot open the port ({exc})") from exc
        log.info("RTU line %s serving", self)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop answering and close the port (it can be opened again when this returns)."""
        server, self._server = self._server, None
        if server is None or not self.loop.running:
            return

        async def _stop() -> None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            task = server.reconnect_task  # a re-open pending after the port was lost
            if task is not None:
                task.cancel()
                server.reconnect_task = None

        self.loop.run(_stop(), timeout)

    def __enter__(self) -> RtuLine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""One master per RS-485 line: the devices of a site that name the same serial port share it.

On a field line one port carries several slaves (an inverter and a meter, say), each with its
own unit id. A serial port has one owner at a time (a second open fails: the port is held), so
the drivers of such devices cannot each open their own :class:`ModbusClient`. Instead every
driver gets a :class:`LineHandle` on the line's one client: requests from any handle go out one
at a time (a half-duplex bus carries one transaction at a time), each with the handle's unit id
and the handle's own timeout, so a slow device's long timeout does not slow the others.

A timeout on one unit drops and re-opens the port (as a lone client does, so a late answer is
never taken for the next request's); the other handles' next requests simply reconnect. The line
closes when its last handle is closed. Handles of one port must agree on its settings (baud
rate, parity): the site schema refuses a site file that does not (harness/config/site.py).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from harness.transports.modbus import ModbusClient


class LineConflict(ValueError):
    """Two devices name one serial port with different line settings."""


class _Line:
    """The one client that owns a port, and who holds a handle on it."""

    def __init__(self, client: ModbusClient, settings: tuple[int, str]) -> None:
        self.client = client
        self.settings = settings
        self.wire = threading.Lock()
        self.users = 0


class LineHandle(ModbusClient):
    """A device's view of a shared line: a ModbusClient whose requests go through the line's
    owner, serialized, with this handle's timeout and retries. ``close`` releases the handle."""

    def __init__(self, lines: SerialLines, port: str, line: _Line, timeout: float) -> None:
        super().__init__("", 0, timeout=timeout, retries=line.client.retries)
        self._target = line.client._target
        self._lines = lines
        self._port = port
        self._line: _Line | None = line

    def _owner(self) -> _Line:
        if self._line is None:
            raise RuntimeError(f"{self.endpoint}: this handle on the line is closed")
        return self._line

    @property
    def connected(self) -> bool:
        return self._line is not None and self._line.client.connected

    def connect(self) -> None:
        line = self._owner()
        with line.wire:
            line.client.connect()

    def _request(self, what: str, unit: int, request: Callable[[Any], Awaitable[Any]]) -> Any:
        line = self._owner()
        owner = line.client
        with line.wire:  # one transaction on the bus at a time
            saved = owner.timeout, owner.retries
            owner.timeout, owner.retries = self.timeout, self.retries
            try:
                owner.connect()
                link = owner._client
                if link is not None:  # pymodbus reads both per attempt (TransactionManager)
                    link.ctx.comm_params.timeout_connect = self.timeout
                    link.ctx.retries = self.retries
                return owner._request(what, unit, request)
            finally:
                owner.timeout, owner.retries = saved

    def close(self) -> None:
        """Release this handle; the port closes with the line's last handle."""
        if self._line is not None:
            self._line = None
            self._lines.release(self._port)


class SerialLines:
    """The open serial lines, by port: one owner client each, shared through handles."""

    def __init__(self) -> None:
        self._lines: dict[str, _Line] = {}
        self._lock = threading.Lock()

    def handle(
        self, port: str, *, baudrate: int, parity: str, timeout: float, retries: int = 1
    ) -> LineHandle:
        """A handle on the line at ``port``, opened with these settings if it is not open yet.

        LineConflict if it is open with other settings (one port, one baud rate and parity).
        """
        settings = (baudrate, parity)
        with self._lock:
            line = self._lines.get(port)
            if line is None:
                client = ModbusClient.rtu(
                    port, baudrate=baudrate, parity=parity, timeout=timeout, retries=retries
                )
                line = self._lines[port] = _Line(client, settings)
            elif line.settings != settings:
                raise LineConflict(
                    f"serial port {port}: open at {line.settings[0]} baud parity "
                    f"{line.settings[1]}, asked for {baudrate} baud parity {parity}"
                )
            line.users += 1
            return LineHandle(self, port, line, timeout)

    def release(self, port: str) -> None:
        with self._lock:
            line = self._lines.get(port)
            if line is None:
                return
            line.users -= 1
            if line.users > 0:
                return
            del self._lines[port]
        line.client.close()

    def open_ports(self) -> list[str]:
        """Ports with at least one handle (for tests and diagnostics)."""
        with self._lock:
            return sorted(self._lines)


LINES = SerialLines()
"""The process's lines: a port is one resource of the machine, whoever opens it."""

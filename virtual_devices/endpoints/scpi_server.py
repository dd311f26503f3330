"""A generic SCPI instrument server on a loopback TCP socket (a raw "SOCKET" VISA resource).

A virtual instrument is a :class:`ScpiHandler`: a command table (SCPI header -> function) plus
the IEEE 488.2 common commands and an error queue that every instrument shares. :class:`ScpiServer`
only speaks the wire protocol: newline-terminated lines, several commands per line separated by
``;``, one reply line per line that held queries (replies joined by ``;`` as SCPI specifies).

As on a real instrument, a set command never answers, and a command that fails (unknown header,
bad parameter) answers nothing either: it pushes an error that ``SYST:ERR?`` reads, e.g.
``-113,"Undefined header;FOO?"``. A client confirms a setting by draining that queue.

Handlers run on the server's asyncio loop thread under the plant lock handed to them, so a command
never sees the plant in the middle of a step. They are short (a setter, a getter, formatting a
capture), so running them inline keeps one thread per loop instead of a pool to shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from harness.transports.aioloop import LoopThread

log = logging.getLogger(__name__)

Command = Callable[[str], "str | None"]
"""A table entry: called with the parameter text after the header; a query returns its reply."""

HOST = "127.0.0.1"
LINE_LIMIT = 64 * 1024
"""Longest accepted command line, bytes; longer input is a client bug, answered by disconnecting."""
ERROR_QUEUE_LENGTH = 20
START_STOP_TIMEOUT_S = 5.0

# SCPI-99 standard error codes and messages used by the virtual instruments.
DATA_TYPE_ERROR = (-104, "Data type error")
MISSING_PARAMETER = (-109, "Missing parameter")
UNDEFINED_HEADER = (-113, "Undefined header")
SETTINGS_CONFLICT = (-221, "Settings conflict")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
TOO_MUCH_DATA = (-223, "Too much data")
ILLEGAL_PARAMETER = (-224, "Illegal parameter value")
DEVICE_ERROR = (-300, "Device-specific error")
QUEUE_OVERFLOW = (-350, "Queue overflow")


class ScpiError(Exception):
    """Raised by a command to push ``code,"message;detail"`` onto the error queue."""

    def __init__(self, kind: tuple[int, str], detail: str = "") -> None:
        self.code, self.message = kind
        self.detail = detail
        super().__init__(self.entry())

    def entry(self) -> str:
        text = f"{self.message};{self.detail}" if self.detail else self.message
        return f'{self.code},"{text.replace(chr(34), chr(39))}"'


@dataclass(frozen=True)
class InstrumentIdentity:
    """The four ``*IDN?`` fields (IEEE 488.2); commas would break the reply, so none allowed."""

    manufacturer: str
    model: str
    serial: str
    firmware: str

    def __post_init__(self) -> None:
        for field_name in ("manufacturer", "model", "serial", "firmware"):
            value = getattr(self, field_name)
            if "," in value or "\n" in value or ";" in value:
                raise ValueError(
                    f"identity {field_name} must not contain , ; or newline: {value!r}"
                )

    def idn(self) -> str:
        return f"{self.manufacturer},{self.model},{self.serial},{self.firmware}"


# -- parameter parsing (shared by the instruments) -------------------------------------------------


def number(args: str) -> float:
    """One finite number, as SCPI ``<NRf>``."""
    text = args.strip()
    if not text:
        raise ScpiError(MISSING_PARAMETER)
    try:
        value = float(text)
    except ValueError:
        raise ScpiError(DATA_TYPE_ERROR, text) from None
    if not math.isfinite(value):
        raise ScpiError(DATA_OUT_OF_RANGE, text)
    return value


def integer(text: str) -> int:
    value = number(text)
    if value != int(value):
        raise ScpiError(DATA_TYPE_ERROR, f"{text.strip()} is not an integer")
    return int(value)


def boolean(args: str) -> bool:
    """SCPI ``<Boolean>``: ON, OFF, 1 or 0."""
    text = args.strip().upper()
    if not text:
        raise ScpiError(MISSING_PARAMETER)
    if text in ("ON", "1"):
        return True
    if text in ("OFF", "0"):
        return False
    raise ScpiError(DATA_TYPE_ERROR, args.strip())


def text_list(args: str) -> list[str]:
    """Comma-separated names, each optionally quoted; empty items are dropped."""
    items = [item.strip().strip("\"'").strip() for item in args.split(",")]
    return [item for item in items if item]


def fmt(value: float) -> str:
    """Shortest text that reads back to the same float (no precision lost on the wire)."""
    return repr(float(value))


# -- command tables --------------------------------------------------------------------------------


SUFFIX = "<n>"
"""Marks a numeric-suffix node in a pattern (``ITEM<n>``: ITEM1, ITEM2 ...; ITEM alone is 1)."""

_SUFFIX_KEY = "#"
_TRAILING_DIGITS = re.compile(r"^(.*?[^0-9])([0-9]+)$")


def _node_forms(node: str) -> tuple[str, ...]:
    """``VOLTage`` -> (``VOLT``, ``VOLTAGE``): the uppercase prefix is SCPI's short form."""
    short = "".join(itertools.takewhile(lambda c: not c.islower(), node))
    forms = {short.upper() or node.upper(), node.upper()}
    return tuple(sorted(forms))


def _expand(pattern: str) -> list[tuple[str, tuple[int, ...]]]:
    """Spellings of a pattern with, for each, the positions of its numeric-suffix nodes.

    A suffix node ``ITEM<n>`` is spelled twice: ``ITEM#`` (a number was sent) and ``ITEM`` (it
    was omitted, which SCPI reads as 1).
    """
    query = pattern.endswith("?")
    body = pattern[:-1] if query else pattern
    body = body.lstrip(":").replace("[:", ":[").replace(":]", "]:")
    options: list[tuple[tuple[str, bool] | None, ...]] = []
    for node in body.split(":"):
        optional = node.startswith("[") and node.endswith("]")
        name = node[1:-1] if optional else node
        suffixed = name.endswith(SUFFIX)
        if suffixed:
            name = name[: -len(SUFFIX)]
        forms: list[tuple[str, bool] | None] = []
        for form in _node_forms(name):
            forms.append((form, suffixed))
            if suffixed:
                forms.append((form + _SUFFIX_KEY, True))
        options.append(((None,) if optional else ()) + tuple(forms))
    spellings = []
    for combo in itertools.product(*options):
        nodes = [part for part in combo if part is not None]
        text = ":".join(name for name, _ in nodes) + ("?" if query else "")
        spellings.append((text, tuple(i for i, (_, suffixed) in enumerate(nodes) if suffixed)))
    return spellings


def expand_header(pattern: str) -> list[str]:
    """All accepted spellings of a header pattern, uppercase.

    ``SOURce:VOLTage?`` gives SOUR:VOLT?, SOURCE:VOLTAGE? and the mixed ones; ``[...]`` marks an
    optional node (``SYSTem:ERRor[:NEXT]?``, ``[SOURce:]VOLTage``); ``<n>`` a numeric suffix
    (``NUMeric:ITEM<n>`` gives NUM:ITEM# for NUM:ITEM1, NUM:ITEM2 ... and NUM:ITEM).
    """
    return [text for text, _ in _expand(pattern)]


def _normalize(header: str) -> tuple[str, list[int | None]]:
    """``NUM:ITEM12?`` -> (``NUM:ITEM#?``, [None, 12]): the lookup key and each node's number."""
    query = header.endswith("?")
    body = header[:-1] if query else header
    names: list[str] = []
    numbers: list[int | None] = []
    for node in body.split(":"):
        match = _TRAILING_DIGITS.match(node)
        if match is None:
            names.append(node)
            numbers.append(None)
        else:
            names.append(match.group(1) + _SUFFIX_KEY)
            numbers.append(int(match.group(2)))
    return ":".join(names) + ("?" if query else ""), numbers


@dataclass(frozen=True)
class _Entry:
    function: Command
    suffix_nodes: tuple[int, ...] = ()


class ScpiHandler:
    """An instrument: identity, command table, error queue; subclasses add :meth:`commands`.

    ``lock`` is the plant's lock: every command runs holding it.
    """

    def __init__(self, identity: InstrumentIdentity, lock: threading.RLock) -> None:
        self.identity = identity
        self.lock = lock
        self.suffixes: tuple[int, ...] = ()
        """Numeric suffixes of the command being run (``ITEM3`` -> (3,)), for ``<n>`` patterns."""
        self._errors: deque[str] = deque()
        self._table: dict[str, _Entry] | None = None

    # What subclasses provide.

    def commands(self) -> Mapping[str, Command]:
        """Header pattern -> function; a pattern ending in ``?`` is the query form."""
        return {}

    def reset(self) -> None:
        """``*RST``: return the instrument's own settings to defaults."""

    # Common commands.

    def _common(self) -> dict[str, Command]:
        return {
            "*IDN?": lambda _args: self.identity.idn(),
            "*RST": lambda _args: self.reset(),
            "*CLS": lambda _args: self._errors.clear(),
            "*OPC?": lambda _args: "1",
            "SYSTem:ERRor[:NEXT]?": lambda _args: self.next_error(),
            "SYSTem:ERRor:COUNt?": lambda _args: str(len(self._errors)),
        }

    def table(self) -> dict[str, _Entry]:
        if self._table is None:
            table: dict[str, _Entry] = {}
            for pattern, function in {**self._common(), **self.commands()}.items():
                for spelling, suffix_nodes in _expand(pattern):
                    table[spelling] = _Entry(function, suffix_nodes)
            self._table = table
        return self._table

    def _lookup(self, header: str) -> tuple[Command, tuple[int, ...]] | None:
        """The function for a header as sent, and its numeric suffixes (omitted ones are 1)."""
        table = self.table()
        entry = table.get(header)
        numbers: list[int | None] = []
        if entry is None:
            key, numbers = _normalize(header)
            entry = table.get(key)
            if entry is None:
                return None
        suffixes = tuple(
            (numbers[i] if i < len(numbers) else None) or 1 for i in entry.suffix_nodes
        )
        return entry.function, suffixes

    # Error queue.

    def push_error(self, error: ScpiError) -> None:
        with self.lock:
            if len(self._errors) >= ERROR_QUEUE_LENGTH:
                self._errors[-1] = ScpiError(QUEUE_OVERFLOW).entry()
                return
            self._errors.append(error.entry())

    def next_error(self) -> str:
        with self.lock:
            return self._errors.popleft() if self._errors else '0,"No error"'

    # Execution.

    def execute(self, unit: str) -> str | None:
        """Run one command (header and parameters); return the reply of a query, else None."""
        text = unit.strip()
        if not text:
            return None
        header, _, args = text.partition(" ")
        header = header.strip().lstrip(":").upper()
        found = self._lookup(header)
        if found is None:
            self.push_error(ScpiError(UNDEFINED_HEADER, header))
            return None
        function, suffixes = found
        try:
            with self.lock:
                self.suffixes = suffixes
                reply = function(args.strip())
        except ScpiError as exc:
            self.push_error(exc)
            return None
        except KeyError as exc:
            self.push_error(ScpiError(ILLEGAL_PARAMETER, str(exc.args[0]) if exc.args else ""))
            return None
        except ValueError as exc:
            self.push_error(ScpiError(DATA_OUT_OF_RANGE, str(exc)))
            return None
        except Exception as exc:  # a virtual-device bug must not kill the connection
            log.exception("%s: command %r failed", self.identity.model, text)
            self.push_error(ScpiError(DEVICE_ERROR, f"{type(exc).__name__}: {exc}"))
            return None
        if header.endswith("?"):
            return "" if reply is None else reply
        return None


class ScpiServer:
    """Serves one :class:`ScpiHandler` on ``127.0.0.1`` (port chosen by the OS) over raw TCP."""

    def __init__(self, handler: ScpiHandler, loop: LoopThread) -> None:
        self.handler = handler
        self._loop = loop
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SCPI server not started")
        return self._port

    @property
    def resource(self) -> str:
        """The VISA resource string a client opens to reach this instrument."""
        return f"TCPIP::{HOST}::{self.port}::SOCKET"

    def start(self) -> int:
        """Listen; returns the port."""
        if self._server is not None:
            return self.port

        async def _start() -> asyncio.Server:
            return await asyncio.start_server(self._accept, HOST, 0, limit=LINE_LIMIT)

        self._server = self._loop.run(_start(), START_STOP_TIMEOUT_S)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self._port

    def stop(self) -> None:
        """Close the listening socket and every client connection."""
        server, self._server = self._server, None
        if server is None or not self._loop.running:
            return

        async def _stop() -> None:
            # Stop accepting first, then let connections accepted a moment ago reach _accept
            # before closing: on Python 3.11 a connection accepted just before Server.close()
            # fails to attach and leaks its socket.
            loop = asyncio.get_running_loop()
            for sock in server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            server.close()
            clients = dict(self._clients)
            for writer in clients.values():
                writer.close()  # the reader sees EOF and the task ends on its own
            if clients:
                await asyncio.wait(clients, timeout=START_STOP_TIMEOUT_S / 2)
            for task in clients:
                task.cancel()  # only a handler stuck in a command is still running
            await asyncio.gather(*clients, return_exceptions=True)
            for writer in clients.values():  # also those whose task never got to run
                await _closed(writer)
            await server.wait_closed()

        try:
            self._loop.run(_stop(), START_STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("SCPI server on port %s: clients did not close in time", self._port)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Register a connection synchronously, so :meth:`stop` can close it even if its task
        has not started yet (a plain callback also keeps Python 3.11's stream code from logging
        a connection task cancelled at shutdown as an error)."""
        if self._server is None:  # accepted while stopping
            writer.close()
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._clients[task] = writer
        task.add_done_callback(lambda done: self._clients.pop(done, None))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:  # line longer than LINE_LIMIT
                    self.handler.push_error(ScpiError(TOO_MUCH_DATA))
                    break
                if not raw:
                    break
                line = raw.decode("ascii", errors="replace")
                replies = [
                    reply
                    for unit in line.split(";")
                    if (reply := self.handler.execute(unit)) is not None
                ]
                if replies:
                    writer.write((";".join(replies) + "\n").encode("ascii", errors="replace"))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            await _closed(writer)

    def __enter__(self) -> ScpiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _closed(writer: asyncio.StreamWriter) -> None:
    """Wait until a closed transport has released its socket (a stopping loop would leak it)."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await writer.wait_closed()

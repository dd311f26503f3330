"""VISA transport: SCPI over pyvisa with the pure-Python pyvisa-py backend (DESIGN section 2).

One :class:`ScpiConnection` per instrument. It owns the resource's settings (newline termination,
timeout in ms, a read chunk size fit for large captures), serializes each write/read pair so two
threads never interleave a query, and turns every failure into :class:`InstrumentError` naming the
resource and the command, so a silent or confused instrument stops the run with a message instead
of a hang or a stack trace from deep inside pyvisa.

pyvisa keeps one ``ResourceManager`` per VISA library per process and closing it closes every
resource it opened. Connections therefore share the ``@py`` manager through a reference count and
the last one to close releases it: no socket outlives its connection, and closing one instrument
never cuts another.

After an I/O error the session is dropped and reopened on the next call: a reply that arrives after
its timeout would otherwise be read as the answer to the next query.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from types import TracebackType
from typing import Any

import pyvisa
import pyvisa.errors
from pyvisa.constants import StatusCode
from pyvisa.resources import MessageBasedResource

from harness.transports import guard

VISA_LIBRARY = "@py"
"""The pyvisa-py backend: no vendor VISA installation needed on a laptop or in CI."""

CHUNK_SIZE = 256 * 1024
"""Bytes per read call; each call has its own timeout, so a long reply arrives in bounded steps."""

MAX_ERRORS_READ = 32
"""Upper bound on ``SYST:ERR?`` reads when draining an error queue (real queues hold 10-30)."""

_IO_ERRORS: tuple[type[BaseException], ...] = (
    pyvisa.errors.Error,
    OSError,
    UnicodeDecodeError,
)


class InstrumentError(RuntimeError):
    """An instrument could not be reached, did not answer in time, or answered nonsense."""


class _SharedManager:
    """Reference-counted access to pyvisa's per-process ``@py`` resource manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._rm: pyvisa.ResourceManager | None = None

    def acquire(self) -> pyvisa.ResourceManager:
        with self._lock:
            if self._rm is None:
                self._rm = pyvisa.ResourceManager(VISA_LIBRARY)
            self._users += 1
            return self._rm

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0 and self._rm is not None:
                self._users = 0
                rm, self._rm = self._rm, None
                rm.close()

    @property
    def users(self) -> int:
        return self._users


_MANAGER = _SharedManager()


def open_connections() -> int:
    """How many :class:`ScpiConnection` objects hold the resource manager (tests check for 0)."""
    return _MANAGER.users


def parse_idn(reply: str) -> tuple[str, str, str, str]:
    """Split a ``*IDN?`` reply into (manufacturer, model, serial, firmware).

    IEEE 488.2 mandates exactly four comma-separated fields; an instrument that sends fewer gets
    empty strings for the missing ones rather than a crash, so its identity still gets recorded.
    """
    fields = [part.strip() for part in reply.strip().split(",", 3)]
    fields += [""] * (4 - len(fields))
    return fields[0], fields[1], fields[2], fields[3]


def parse_floats(reply: str, context: str = "") -> list[float]:
    """Parse a comma-separated list of numbers; an empty reply is an empty list."""
    text = reply.strip()
    if not text:
        return []
    values: list[float] = []
    for index, token in enumerate(text.split(",")):
        try:
            values.append(float(token))
        except ValueError:
            where = f" from {context}" if context else ""
            raise InstrumentError(
                f"item {index} of the reply{where} is not a number: {token.strip()!r}"
            ) from None
    return values


def _socket_of(resource: MessageBasedResource) -> socket.socket | None:
    """The TCP socket under a pyvisa-py raw-socket session, or None for any other session."""
    sessions: Any = getattr(resource.visalib, "sessions", None)
    session: Any = sessions.get(resource.session) if isinstance(sessions, dict) else None
    sock: Any = getattr(session, "interface", None)
    return sock if isinstance(sock, socket.socket) else None


def _no_delay(resource: MessageBasedResource) -> None:
    """Turn Nagle off on a raw-socket session.

    A command and its SYST:ERR? check are two small writes: with Nagle on, the second waits for
    the instrument's delayed ACK (40 ms on Linux) on every command. pyvisa-py 0.8 wires the
    VI_ATTR_TCPIP_NODELAY setter of socket sessions to a method that raises, so the option is set
    on the socket itself.
    """
    sock = _socket_of(resource)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _connect_error(resource: MessageBasedResource) -> int:
    """The socket's pending error (0 if connected); 0 when it cannot be inspected.

    pyvisa-py opens a TCP socket resource without waiting for the connect outcome, so a refused
    connection only shows at the first write; reading ``SO_ERROR`` reports it at open time instead.
    """
    sock = _socket_of(resource)
    if sock is None:
        return 0
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    except OSError:
        return 0


class ScpiConnection:
    """A SCPI instrument reached through a VISA resource string.

    ``timeout_s`` bounds every wait for a reply (wall time: instruments live in the real world).
    Loopback virtual instruments use ``TCPIP::127.0.0.1::<port>::SOCKET``.
    """

    def __init__(self, resource: str, timeout_s: float = 2.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout must be > 0 s, got {timeout_s}")
        self.resource = resource
        self.timeout_s = float(timeout_s)
        self._lock = threading.RLock()
        self._rm: pyvisa.ResourceManager | None = _MANAGER.acquire()
        self._inst: MessageBasedResource | None = None
        try:
            self._open("(open)")
        except BaseException:
            self.close()
            raise

    # -- session ---------------------------------------------------------------------------------

    def _open(self, command: str) -> MessageBasedResource:
        if self._rm is None:
            raise InstrumentError(f"{self.resource}: connection is closed (command {command!r})")
        if self._inst is not None:
            return self._inst
        ms = max(1, round(self.timeout_s * 1000))
        try:
            inst = self._rm.open_resource(self.resource, open_timeout=ms)
        except Exception as exc:  # pyvisa-py raises a bare Exception on connect failure
            raise InstrumentError(f"{self.resource}: cannot open ({exc})") from exc
        if not isinstance(inst, MessageBasedResource):
            inst.close()
            raise InstrumentError(f"{self.resource}: not a message-based (SCPI) resource")
        error = _connect_error(inst)
        if error:
            inst.close()
            raise InstrumentError(
                f"{self.resource}: cannot connect ({errno.errorcode.get(error, str(error))})"
            )
        inst.read_termination = "\n"
        inst.write_termination = "\n"
        inst.timeout = ms
        _no_delay(inst)
        inst.chunk_size = CHUNK_SIZE
        self._inst = inst
        return inst

    def _drop(self) -> None:
        inst, self._inst = self._inst, None
        if inst is not None:
            with contextlib.suppress(*_IO_ERRORS):
                inst.close()

    def _fail(self, command: str, exc: BaseException, timeout_s: float) -> InstrumentError:
        self._drop()
        if isinstance(exc, pyvisa.errors.VisaIOError) and (
            exc.error_code == StatusCode.error_timeout
        ):
            return InstrumentError(
                f"{self.resource}: no answer to {command!r} within {timeout_s:g} s"
            )
        return InstrumentError(f"{self.resource}: {command!r} failed: {exc}")

    # -- SCPI --------------------------------------------------------------------------------------

    def write(self, cmd: str) -> None:
        """Send a command; SCPI set commands have no reply (see :meth:`errors` to check them).

        Every command passes the write gate first (audit, dry run): see harness.transports.guard.
        """
        if not guard.permit(guard.WriteRequest("scpi", self.resource, cmd)):
            return
        with self._lock:
            inst = self._open(cmd)
            try:
                inst.write(cmd)
            except _IO_ERRORS as exc:
                raise self._fail(cmd, exc, self.timeout_s) from exc

    def query(self, cmd: str, timeout_s: float | None = None) -> str:
        """Send a query and return its reply line without the terminator.

        ``timeout_s`` overrides the connection's timeout for this reply only (long transfers).
        """
        wait = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            inst = self._open(cmd)
            try:
                if timeout_s is not None:
                    inst.timeout = max(1, round(wait * 1000))
                try:
                    return inst.query(cmd)
                finally:
                    if timeout_s is not None and self._inst is inst:
                        inst.timeout = max(1, round(self.timeout_s * 1000))
            except _IO_ERRORS as exc:
                raise self._fail(cmd, exc, wait) from exc

    def query_float(self, cmd: str) -> float:
        values = self.query_floats(cmd)
        if len(values) != 1:
            raise InstrumentError(
                f"{self.resource}: {cmd!r} should return one number, got {len(values)}"
            )
        return values[0]

    def query_floats(self, cmd: str, timeout_s: float | None = None) -> list[float]:
        """A query whose reply is comma-separated numbers."""
        reply = self.query(cmd, timeout_s)
        try:
            return parse_floats(reply)
        except InstrumentError as exc:
            raise InstrumentError(f"{self.resource}: {cmd!r}: {exc}") from None

    def errors(self) -> list[str]:
        """Drain the instrument's error queue (``SYST:ERR?`` until ``0,...``); [] when clean."""
        found: list[str] = []
        for _ in range(MAX_ERRORS_READ):
            reply = self.query("SYST:ERR?").strip()
            code = reply.split(",", 1)[0].strip()
            try:
                if int(code) == 0:
                    return found
            except ValueError:
                raise InstrumentError(
                    f"{self.resource}: 'SYST:ERR?' answered {reply!r}, not 'code,\"message\"'"
                ) from None
            found.append(reply)
        return found

    def command(self, cmd: str) -> None:
        """Write a set command and confirm the instrument accepted it (error queue stays empty)."""
        with self._lock:
            self.write(cmd)
            problems = self.errors()
        if problems:
            raise InstrumentError(f"{self.resource}: {cmd!r} rejected: {'; '.join(problems)}")

    def close(self) -> None:
        """Close the session and release the shared resource manager; safe to call twice."""
        with self._lock:
            self._drop()
            if self._rm is not None:
                self._rm = None
                _MANAGER.release()

    @property
    def closed(self) -> bool:
        return self._rm is None

    def __enter__(self) -> ScpiConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ScpiConnection({self.resource!r}, timeout_s={self.timeout_s:g})"

"""What every table-driven SCPI driver shares: a connection, a dialect, and confirmed commands.

A command is written, then the instrument's error queue is drained with the *dialect's* error
query (``SYSTem:ERRor?`` on SCPI-99 instruments, ``:STATus:ERRor?`` on Yokogawa's), so a value
the instrument refused stops the run where it happened. Every failure becomes a
:class:`DeviceError` that names the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self, TypeVar

from harness.devices.roles import DeviceError, Identity
from harness.transports.dialects import GENERIC, Dialect, RoleDialect, load_dialect
from harness.transports.visa import InstrumentError, ScpiConnection, parse_floats, parse_idn

T = TypeVar("T")

MAX_ERRORS_READ = 32
"""Upper bound on error-queue reads after a command (real queues hold 10-30 entries)."""


def resolve(dialect: Dialect | str) -> Dialect:
    return load_dialect(dialect) if isinstance(dialect, str) else dialect


class DialectDriver:
    """Base of the grid, analyzer and load-bank drivers: ``role`` names the dialect section."""

    role: str = ""

    def __init__(self, name: str, conn: ScpiConnection, dialect: Dialect | str = GENERIC) -> None:
        self.name = name
        self.conn = conn
        self.dialect = resolve(dialect)
        self.commands: RoleDialect = self.dialect.role(self.role)

    @classmethod
    def open(
        cls, name: str, resource: str, timeout_s: float = 2.0, dialect: Dialect | str = GENERIC
    ) -> Self:
        """Connect and run the dialect's setup commands; the connection is closed on failure."""
        conn = cls.connect(name, resource, timeout_s)
        try:
            driver = cls(name, conn, dialect)
            driver.run_setup()
        except BaseException:
            conn.close()
            raise
        return driver

    @classmethod
    def connect(cls, name: str, resource: str, timeout_s: float) -> ScpiConnection:
        try:
            return ScpiConnection(resource, timeout_s)
        except InstrumentError as exc:
            raise DeviceError(f"{name}: {exc}") from exc

    def _io(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except InstrumentError as exc:
            raise DeviceError(f"{self.name}: {exc}") from exc

    # -- commands as the dialect spells them ---------------------------------------------------

    def errors(self) -> list[str]:
        """Drain the error queue; [] when clean."""
        query = self.dialect.error_query.render()
        found: list[str] = []
        for _ in range(MAX_ERRORS_READ):
            reply = self._io(lambda: self.conn.query(query)).strip()
            code = reply.split(",", 1)[0].strip()
            try:
                if int(code) == 0:
                    return found
            except ValueError:
                raise DeviceError(
                    f"{self.name}: {query!r} answered {reply!r}, not 'code,\"message\"'"
                ) from None
            found.append(reply)
        return found

    def send(self, line: str) -> None:
        """Write one command line and confirm the instrument accepted it."""
        with self.conn._lock:  # one write and its error check, never interleaved with a query
            self._io(lambda: self.conn.write(line))
            problems = self.errors()
        if problems:
            raise DeviceError(f"{self.name}: {line!r} rejected: {'; '.join(problems)}")

    def write(self, operation: str, **values: object) -> None:
        self.send(self.commands.op(operation).render(**values))

    def ask(self, operation: str, timeout_s: float | None = None, **values: object) -> str:
        line = self.commands.op(operation).render(**values)
        return self._io(lambda: self.conn.query(line, timeout_s)).strip()

    def ask_floats(
        self, operation: str, timeout_s: float | None = None, **values: object
    ) -> list[float]:
        line = self.commands.op(operation).render(**values)
        reply = self._io(lambda: self.conn.query(line, timeout_s))
        try:
            return parse_floats(reply)
        except InstrumentError as exc:
            raise DeviceError(f"{self.name}: {line!r}: {exc}") from None

    def ask_float(self, operation: str, **values: object) -> float:
        numbers = self.ask_floats(operation, None, **values)
        if len(numbers) != 1:
            line = self.commands.op(operation).render(**values)
            raise DeviceError(f"{self.name}: {line!r} should return one number, got {len(numbers)}")
        return numbers[0]

    def run_setup(self) -> None:
        """The dialect's setup commands (reply format, remote mode ...), each confirmed."""
        for op in self.commands.setup:
            self.send(op.render())

    # -- Device ----------------------------------------------------------------------------------

    def identity(self) -> Identity:
        reply = self._io(lambda: self.conn.query("*IDN?"))
        maker, model, serial, firmware = parse_idn(reply)
        return Identity(maker, model, serial, firmware, extra={"dialect": self.dialect.family})

    def disconnect(self) -> None:
        self.conn.close()

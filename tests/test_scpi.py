"""The VISA transport against the generic SCPI server: a real pyvisa-py client on loopback."""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping

import pytest

from harness.transports.aioloop import LoopThread
from harness.transports.visa import (
    InstrumentError,
    ScpiConnection,
    open_connections,
    parse_floats,
    parse_idn,
)
from virtual_devices.endpoints.scpi_server import (
    ERROR_QUEUE_LENGTH,
    Command,
    InstrumentIdentity,
    ScpiHandler,
    ScpiServer,
    expand_header,
    fmt,
    number,
)

IDENTITY = InstrumentIdentity("Test Maker", "TM-1", "SN-42", "0.9")


class Knob(ScpiHandler):
    """A minimal instrument: one settable value, a list query and a deliberately slow query."""

    def __init__(self, lock: threading.RLock) -> None:
        super().__init__(IDENTITY, lock)
        self.value = 0.0
        self.resets = 0

    def commands(self) -> Mapping[str, Command]:
        return {
            "[SOURce:]VALue": self._set,
            "[SOURce:]VALue?": lambda _a: fmt(self.value),
            "LIST?": lambda a: ",".join(fmt(i * 0.5) for i in range(int(number(a)))),
            "SLOW?": self._slow,
        }

    def _set(self, args: str) -> None:
        self.value = number(args)

    def _slow(self, args: str) -> str:
        time.sleep(number(args))  # blocks the loop thread, as a busy instrument would
        return "late"

    def reset(self) -> None:
        self.value = 0.0
        self.resets += 1


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread("test-scpi")
    try:
        yield thread
    finally:
        thread.stop()
        assert not thread.running


@pytest.fixture
def knob() -> Knob:
    return Knob(threading.RLock())


@pytest.fixture
def server(loop: LoopThread, knob: Knob) -> Iterator[ScpiServer]:
    srv = ScpiServer(knob, loop)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def conn(server: ScpiServer) -> Iterator[ScpiConnection]:
    connection = ScpiConnection(server.resource, timeout_s=1.0)
    try:
        yield connection
    finally:
        connection.close()
        assert open_connections() == 0


def test_resource_string_names_the_os_chosen_port(server: ScpiServer) -> None:
    assert server.port > 0
    assert server.resource == f"TCPIP::127.0.0.1::{server.port}::SOCKET"


def test_idn_round_trip(conn: ScpiConnection) -> None:
    assert conn.query("*IDN?") == "Test Maker,TM-1,SN-42,0.9"
    assert parse_idn(conn.query("*idn?")) == ("Test Maker", "TM-1", "SN-42", "0.9")


def test_set_and_query_reach_the_handler(conn: ScpiConnection, knob: Knob) -> None:
    conn.write("SOUR:VAL 12.5")
    assert conn.query_float("SOUR:VAL?") == 12.5
    assert knob.value == 12.5


@pytest.mark.parametrize(
    "header", ["VAL", "val", "VALUE", "Source:Value", ":SOUR:VAL", "sour:value"]
)
def test_short_long_and_optional_forms(conn: ScpiConnection, knob: Knob, header: str) -> None:
    conn.write(f"{header} 3")
    assert conn.query("*OPC?") == "1"  # the server handles a line at a time: now it is done
    assert knob.value == 3.0
    assert conn.query_float(f"{header}?") == 3.0


def test_expand_header_spellings() -> None:
    assert set(expand_header("SYSTem:ERRor[:NEXT]?")) == {
        "SYST:ERR?",
        "SYST:ERROR?",
        "SYSTEM:ERR?",
        "SYSTEM:ERROR?",
        "SYST:ERR:NEXT?",
        "SYST:ERROR:NEXT?",
        "SYSTEM:ERR:NEXT?",
        "SYSTEM:ERROR:NEXT?",
    }
    assert set(expand_header("LOAD:QF")) == {"LOAD:QF"}


def test_several_commands_per_line(conn: ScpiConnection, knob: Knob) -> None:
    assert conn.query("VAL 7;VAL?") == "7.0"
    assert conn.query("VAL?;*IDN?") == "7.0;Test Maker,TM-1,SN-42,0.9"
    assert knob.value == 7.0


def test_unknown_command_goes_to_the_error_queue(conn: ScpiConnection) -> None:
    conn.write("FOO:BAR 1")
    assert conn.query("SYST:ERR?") == '-113,"Undefined header;FOO:BAR"'
    assert conn.query("SYST:ERR?") == '0,"No error"'


def test_bad_parameter_is_reported_and_setting_kept(conn: ScpiConnection, knob: Knob) -> None:
    conn.write("VAL 4")
    conn.write("VAL abc")
    conn.write("VAL")
    assert conn.errors() == ['-104,"Data type error;abc"', '-109,"Missing parameter"']
    assert knob.value == 4.0
    assert conn.errors() == []


def test_command_raises_naming_resource_command_and_error(conn: ScpiConnection) -> None:
    conn.command("VAL 1")  # accepted: no error
    with pytest.raises(InstrumentError) as info:
        conn.command("NOPE 1")
    message = str(info.value)
    assert conn.resource in message and "NOPE 1" in message and "-113" in message


def test_cls_clears_and_queue_overflows(conn: ScpiConnection) -> None:
    for _ in range(ERROR_QUEUE_LENGTH + 5):
        conn.write("NOPE")
    errors = conn.errors()
    assert len(errors) == ERROR_QUEUE_LENGTH
    assert errors[-1].startswith("-350,")
    conn.write("NOPE")
    conn.write("*CLS")
    assert conn.errors() == []


def test_rst_resets_the_instrument(conn: ScpiConnection, knob: Knob) -> None:
    conn.write("VAL 9")
    assert conn.query("*RST;*OPC?") == "1"
    assert knob.resets == 1 and knob.value == 0.0


def test_query_floats_parses_comma_lists(conn: ScpiConnection) -> None:
    assert conn.query_floats("LIST? 4") == [0.0, 0.5, 1.0, 1.5]
    assert conn.query_floats("LIST? 0") == []
    with pytest.raises(InstrumentError, match="one number"):
        conn.query_float("LIST? 3")
    with pytest.raises(InstrumentError, match="not a number"):
        conn.query_floats("*IDN?")
    assert parse_floats(" 1, 2e3 ,-4 ") == [1.0, 2000.0, -4.0]


def test_large_reply_arrives_intact(conn: ScpiConnection) -> None:
    values = conn.query_floats("LIST? 40000")  # ~0.4 MB: several pyvisa chunks
    assert len(values) == 40000
    assert values[-1] == 19999.5


def test_silent_instrument_times_out_without_hanging() -> None:
    """The listening socket completes connections in the kernel but nobody ever answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        resource = f"TCPIP::127.0.0.1::{silent.getsockname()[1]}::SOCKET"
        with ScpiConnection(resource, timeout_s=0.3) as conn:
            started = time.monotonic()
            with pytest.raises(InstrumentError) as info:
                conn.query("*IDN?")
            elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 0.3 + 0.5
    assert resource in str(info.value) and "*IDN?" in str(info.value)
    assert "0.3 s" in str(info.value)
    assert open_connections() == 0


def test_late_reply_is_not_read_as_the_next_answer(conn: ScpiConnection) -> None:
    conn.write("VAL 5")
    with pytest.raises(InstrumentError, match="no answer"):
        conn.query("SLOW? 0.5", timeout_s=0.1)
    # The session was reopened: "late" went to the dropped socket, not into this reply.
    assert conn.query("VAL?") == "5.0"


def test_unreachable_instrument_fails_at_open() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resource = f"TCPIP::127.0.0.1::{port}::SOCKET"
    with pytest.raises(InstrumentError, match=resource.replace(".", r"\.")):
        ScpiConnection(resource, timeout_s=0.5)
    assert open_connections() == 0


def test_closed_connection_refuses_io(server: ScpiServer) -> None:
    conn = ScpiConnection(server.resource, timeout_s=1.0)
    conn.close()
    conn.close()  # idempotent
    assert conn.closed
    with pytest.raises(InstrumentError, match="closed"):
        conn.query("*IDN?")


def test_two_connections_close_independently(server: ScpiServer) -> None:
    first = ScpiConnection(server.resource, timeout_s=1.0)
    second = ScpiConnection(server.resource, timeout_s=1.0)
    try:
        assert open_connections() == 2
        first.close()
        assert second.query("*IDN?").startswith("Test Maker")
    finally:
        first.close()
        second.close()
    assert open_connections() == 0


def test_stop_frees_the_port_and_drops_clients(loop: LoopThread, knob: Knob) -> None:
    server = ScpiServer(knob, loop)
    port = server.start()
    conn = ScpiConnection(server.resource, timeout_s=0.5)
    try:
        assert conn.query("*OPC?") == "1"
        server.stop()
        with pytest.raises(InstrumentError):
            conn.query("*IDN?")
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))  # free: nothing listens or lingers on it
    finally:
        conn.close()
        server.stop()


def test_stop_right_after_a_connection_leaks_no_socket(
    loop: LoopThread, knob: Knob, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that connects and leaves just before stop() (Python 3.11 leaked those)."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR, "asyncio"):
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(30):
            server = ScpiServer(knob, loop)
            server.start()
            ScpiConnection(server.resource, timeout_s=0.5).close()
            server.stop()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert caplog.records == []


class Items(ScpiHandler):
    """Numeric-suffix headers (``ITEM<n>``), as a Yokogawa-style analyzer has them."""

    def __init__(self) -> None:
        super().__init__(IDENTITY, threading.RLock())
        self.items: dict[int, str] = {}

    def commands(self) -> Mapping[str, Command]:
        return {
            ":NUMeric[:NORMal]:ITEM<n>": self._set,
            ":NUMeric[:NORMal]:ITEM<n>?": lambda _a: self.items.get(self.suffixes[0], ""),
        }

    def _set(self, args: str) -> None:
        (n,) = self.suffixes
        self.items[n] = args


def test_numeric_suffix_headers() -> None:
    assert "NUM:ITEM#" in expand_header(":NUMeric[:NORMal]:ITEM<n>")
    handler = Items()
    handler.execute(":NUM:ITEM3 URMS,1")
    handler.execute("numeric:normal:item12 P,2")
    handler.execute("NUM:ITEM IRMS,1")  # an omitted suffix is 1
    assert handler.items == {3: "URMS,1", 12: "P,2", 1: "IRMS,1"}
    assert handler.execute(":NUMERIC:ITEM12?") == "P,2"
    handler.execute(":NUM:ITEMS3 X")
    assert handler.next_error() == '-113,"Undefined header;NUM:ITEMS3"'

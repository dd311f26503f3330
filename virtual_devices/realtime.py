"""A virtual site in real time, served out of process (``harness site up``).

In CI the lock-step SimClock moves the plant only when the harness sleeps. Out of process nobody
sleeps on the site's behalf: a person with mbpoll, a SunSpec client or a CAN tool talks to it as
to a bench, in wall-clock time. Three small pieces make the same :class:`VirtualSite` do that:

* :class:`CatchUpLock`, the site lock: whoever takes it first (an endpoint serving a request, or
  the driver) brings the site to the present instant, so every reply and every write sees the
  plant *now*, not up to one driver tick ago, and an event happens at its true time.
* :class:`RealTimeDriver`, a thread that takes that lock every ``period_s`` (a few ms): the plant
  keeps its 1 ms steps around events and the BMS frames go out within a tick of their due time,
  stamped with wall-clock time by the bus (:func:`wall_clock_bus`).
* :class:`CanShare`, a python-can-remote server per BMS bus, bound to 127.0.0.1, so CAN tools in
  other processes share the bus (``can.Bus(interface="remote", channel="ws://127.0.0.1:PORT/")``).

:class:`RealTimeSite` puts them together and describes every endpoint for a JSON file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import can
from can_remote import RemoteServer

from harness.config.site import CanEndpoint, ModbusTcpEndpoint, Site, VisaEndpoint
from harness.transports.dialects.relay_bank import RelayBankEndpoints
from virtual_devices.site import HOST, VirtualSite

log = logging.getLogger(__name__)

DEFAULT_PERIOD_S = 0.002
"""Driver tick: CAN frames leave at most this late; the plant's own step is finer around events."""

STOP_TIMEOUT_S = 3.0


def wall_clock_bus(channel: str) -> can.BusABC:
    """A virtual bus that stamps each frame with the wall-clock time it is sent (as hardware)."""
    return can.Bus(interface="virtual", channel=channel, preserve_timestamps=False)


class CatchUpLock:
    """A re-entrant lock that brings the site to the present when first taken.

    ``catch_up`` runs with the lock held, only on the outermost acquisition (a handler that
    re-enters never sees the plant move under it). Until it is set the lock is a plain RLock.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # only touched while holding _lock
        self.catch_up: Callable[[], None] | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth += 1
        catch_up = self.catch_up  # read once: stop() may clear it meanwhile
        if self._depth == 1 and catch_up is not None:
            try:
                catch_up()
            except BaseException:
                self.release()
                raise
        return True

    def release(self) -> None:
        self._depth -= 1
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass
class TickStats:
    """How late the driver woke up: the bound on how late a CAN frame leaves, beyond one tick."""

    ticks: int = 0
    late_max_s: float = 0.0
    late_sum_s: float = 0.0
    skipped: int = 0
    """Ticks missed entirely because one took longer than the period."""

    @property
    def late_mean_s(self) -> float:
        return self.late_sum_s / self.ticks if self.ticks else 0.0


class RealTimeDriver:
    """Advances a site to wall-clock time on its own thread, every ``period_s``.

    Site time is seconds since the driver was made (``origin`` on ``time.monotonic``), so it starts
    at 0 like the plant. ``advance`` is called under ``lock`` (a :class:`CatchUpLock` whose
    catch-up is this driver's), so endpoints that take the lock also catch up.
    """

    def __init__(
        self,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < period_s <= 0.1:
            raise ValueError(f"driver period must be in (0, 0.1] s, got {period_s}")
        self.period_s = period_s
        self._clock = clock
        self.origin = clock()
        self.origin_unix = time.time() - (clock() - self.origin)
        self.lock = CatchUpLock()
        self.stats = TickStats()
        self.error: BaseException | None = None
        self._advance: Callable[[float], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> float:
        """Site time, s."""
        return self._clock() - self.origin

    def _catch_up(self) -> None:
        if self._advance is not None:
            self._advance(self.now())

    def start(self, advance: Callable[[float], None]) -> None:
        """Begin advancing with ``advance(site_time)``; the site is brought to now at once."""
        if self._thread is not None:
            raise RuntimeError("driver already started")
        self._advance = advance
        self.lock.catch_up = self._catch_up
        with self.lock:
            pass
        self._thread = threading.Thread(target=self._run, name="realtime-driver", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        period = self.period_s
        stats = self.stats
        due = self._clock() + period
        try:
            while not self._stop.wait(max(0.0, due - self._clock())):
                woke = self._clock()
                late = woke - due
                stats.ticks += 1
                stats.late_sum_s += late
                stats.late_max_s = max(stats.late_max_s, late)
                with self.lock:  # catches up
                    pass
                due += period
                now = self._clock()
                if now > due:  # overran: the next advance covers the gap in one go
                    missed = math.ceil((now - due) / period)
                    stats.skipped += missed
                    due += missed * period
        except BaseException as exc:  # the site is broken: stop and let the owner report it
            log.exception("real-time driver stopped")
            self.error = exc

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop advancing; the lock then stays a plain lock (the site no longer moves)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.lock.catch_up = None


class CanShare:
    """A python-can-remote server on 127.0.0.1 (OS-chosen port) exposing one virtual channel.

    Each client gets its own virtual bus on the channel: it receives what the BMS sends and what
    other clients send, and what it sends reaches the BMS (the inverter heartbeat).
    """

    def __init__(self, channel: str, host: str = HOST) -> None:
        self.channel = channel
        self.server = RemoteServer(host, 0, interface="virtual", channel=channel)
        self.host = str(self.server.server_address[0])
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"can-remote-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The ``channel`` a client passes with ``interface="remote"``."""
        return f"ws://{self.host}:{self.port}/"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop accepting, hang up on every client, free the port."""
        self.server.shutdown()
        self._thread.join(timeout)
        for client in list(self.server.clients):
            _hang_up(client)
        deadline = time.monotonic() + timeout
        while self.server.clients and time.monotonic() < deadline:
            time.sleep(0.02)
        self.server.server_close()


def _hang_up(client: Any) -> None:
    """Close a client's websocket both ways, so its handler thread (blocked reading) ends."""
    ws = client._ws  # can_remote keeps no public handle on a connection
    with contextlib.suppress(OSError):
        ws.close(1001, "server shutting down")
    with contextlib.suppress(OSError):
        ws.socket.shutdown(socket.SHUT_RDWR)


_VISA_SOCKET = re.compile(r"^TCPIP\d*::(?P<host>[^:]+)::(?P<port>\d+)::SOCKET$", re.IGNORECASE)


@dataclass
class RealTimeSite:
    """A :class:`VirtualSite` driven in real time, its CAN buses shared over python-can-remote."""

    site: Site
    vsite: VirtualSite
    driver: RealTimeDriver
    shares: dict[str, CanShare] = field(default_factory=dict)

    @classmethod
    def start(cls, site: Site, period_s: float = DEFAULT_PERIOD_S) -> RealTimeSite:
        """Start every virtual endpoint and the driver; on failure undo what was started."""
        driver = RealTimeDriver(period_s)
        vsite = VirtualSite.start(site, driver.lock, can_bus=wall_clock_bus)
        rt = cls(site=site, vsite=vsite, driver=driver)
        try:
            for key, endpoint in vsite.endpoints.items():
                if isinstance(endpoint, CanEndpoint):
                    rt.shares[key] = CanShare(endpoint.channel)
            driver.start(vsite.advance)
        except BaseException:
            rt.stop()
            raise
        return rt

    def now(self) -> float:
        return self.driver.now()

    def describe(self) -> dict[str, Any]:
        """What a client needs to reach the site, JSON-ready (the README's "Out of process")."""
        return {
            "site": self.site.spec.site.name,
            "site_file": str(self.site.path.resolve()),
            "clock": {
                "kind": "real_time",
                "origin_unix": self.driver.origin_unix,
                "origin_monotonic": self.driver.origin,
                "tick_s": self.driver.period_s,
            },
            "endpoints": {
                key: self._describe(key, endpoint) for key, endpoint in self.vsite.endpoints.items()
            },
        }

    def _describe(self, key: str, endpoint: Any) -> dict[str, Any]:
        if isinstance(endpoint, ModbusTcpEndpoint):
            entry: dict[str, Any] = {
                "protocol": "modbus_tcp",
                "host": endpoint.host,
                "port": endpoint.port,
                "unit": endpoint.unit,
            }
            site_endpoint: dict[str, Any] = {
                "transport": "modbus_tcp",
                "host": endpoint.host,
                "port": endpoint.port,
                "unit": endpoint.unit,
            }
        elif isinstance(endpoint, CanEndpoint):
            share = self.shares[key]
            node = self.site.node(key.rsplit(".", 1)[0])
            entry = {
                "protocol": "can",
                "interface": "remote",
                "channel": share.url,
                "host": share.host,
                "port": share.port,
                "dbc": str(self.site.resolve(node.bms.dbc).resolve()),
            }
            site_endpoint = {"transport": "can", "interface": "remote", "channel": share.url}
        elif isinstance(endpoint, VisaEndpoint):
            match = _VISA_SOCKET.match(endpoint.resource)
            if match is None:
                raise ValueError(f"{key}: unexpected VISA resource {endpoint.resource!r}")
            entry = {
                "protocol": "scpi",
                "host": match["host"],
                "port": int(match["port"]),
                "resource": endpoint.resource,
            }
            site_endpoint = {"transport": "visa", "resource": endpoint.resource}
        elif isinstance(endpoint, RelayBankEndpoints):
            # A relay-stepped load bank: one controller per branch, each named in the options.
            entry = {"protocol": "scpi", "branches": dict(endpoint.resources)}
            site_endpoint = {"transport": "visa", "resource": endpoint.resources["resistive"]}
        else:
            raise TypeError(f"{key}: cannot describe endpoint {endpoint!r}")
        entry["endpoint"] = site_endpoint
        return entry

    def stop(self) -> None:
        """Stop the driver first (nothing moves), then the CAN shares, then the endpoints."""
        self.driver.stop()
        for share in self.shares.values():
            try:
                share.stop()
            except Exception:  # keep tearing down the rest
                log.exception("stopping the CAN share on port %d", share.port)
        self.vsite.stop()

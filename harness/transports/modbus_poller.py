"""Telemetry from many Modbus TCP devices at a fixed rate, all driven from one asyncio loop.

The synchronous :class:`~harness.transports.modbus.ModbusClient` blocks its caller, so polling a
fleet through it takes a thread per device and two thread hand-offs per request; at 100 devices
x 10 Hz that costs more CPU than the polls themselves (bench/README.md, modbus_poll). This poller
keeps one pymodbus ``AsyncModbusTcpClient`` per device on a single :class:`LoopThread` and runs
every device's schedule as a task there: no caller threads, no hand-off per request.

A poll is ONE read request: the points asked for (and their scale factors) must lie within one
span of at most 125 registers of the shared register map, else construction fails naming them.
Each device keeps a slot per period, spread evenly over it so requests do not arrive in bursts.
A cycle is missed when its poll fails, ends after the device's next slot, or cannot start before
that slot (the loop is a whole period behind: the cycle is skipped, not queued).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from harness.transports.aioloop import LoopThread
from harness.transports.modbus import FC_READ_HOLDING, MAX_READ_REGISTERS, ModbusClient, Transaction
from harness.transports.regmap import RegisterMap, Value, decode


@dataclass(frozen=True)
class Target:
    """One device of the fleet: where it listens and its unit id."""

    host: str
    port: int
    unit: int = 1


@dataclass(frozen=True)
class Poll:
    """One completed (or failed) poll of one device."""

    device: int
    slot: float
    start: float
    done: float
    values: dict[str, Value] | None
    error: str = ""

    @property
    def latency(self) -> float:
        return self.done - self.start


@dataclass
class FleetStats:
    """What a run of :meth:`FleetPoller.run` did, counted over every device."""

    polls: int = 0
    missed: int = 0
    errors: int = 0
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)
    late_starts: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile latency in seconds (nearest rank); NaN before any poll."""
        data = sorted(self.latencies)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]


class FleetPoller:
    """Polls ``names`` of ``regmap`` from every target, in one request per poll."""

    def __init__(
        self,
        targets: Sequence[Target],
        regmap: RegisterMap,
        names: Sequence[str],
        *,
        timeout: float = 1.0,
        loop: LoopThread | None = None,
    ) -> None:
        if not targets:
            raise ValueError("FleetPoller: no target to poll")
        self.targets = list(targets)
        self.regmap = regmap
        self.timeout = timeout
        wanted = [regmap.point(n) for n in names]
        needed = list(wanted)
        for p in wanted:
            sf_point = regmap.sf_point(p)
            if sf_point is not None:
                needed.append(sf_point)
        spans = regmap.spans(needed, MAX_READ_REGISTERS, gap=MAX_READ_REGISTERS)
        if len(spans) != 1 or spans[0].table != "holding":
            groups = "; ".join(", ".join(p.name for p in s.points) for s in spans)
            raise ValueError(
                f"FleetPoller: {regmap.name} points {list(names)} need {len(spans)} requests "
                f"({groups}); a fleet poll is one read of at most {MAX_READ_REGISTERS} "
                "contiguous mapped holding registers"
            )
        self.address = spans[0].address
        self.count = spans[0].count
        self._wanted = wanted
        self._sf_points = [p for p in needed if p.type == "sunssf"]
        self._own_loop = loop is None
        self._loop = loop or LoopThread("modbus-fleet")
        self._clients: list[AsyncModbusTcpClient] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Open every connection; ConnectionError naming the first target that did not answer."""

        async def _open() -> list[bool]:
            self._clients = [
                AsyncModbusTcpClient(
                    t.host, port=t.port, timeout=self.timeout, retries=0, reconnect_delay=0
                )
                for t in self.targets
            ]
            return list(await asyncio.gather(*(c.connect() for c in self._clients)))

        opened = self._loop.run(_open(), self.timeout + 5.0)
        for target, ok in zip(self.targets, opened, strict=True):
            if not ok:
                self.close()
                raise ConnectionError(f"FleetPoller: cannot connect to {target.host}:{target.port}")

    def close(self) -> None:
        """Close every connection and, if this poller owns it, stop its loop."""
        clients, self._clients = self._clients, []
        if clients and self._loop.running:

            async def _close() -> None:
                for c in clients:
                    c.close()

            self._loop.run(_close(), self.timeout + 5.0)
        if self._own_loop:
            self._loop.stop()

    def __enter__(self) -> FleetPoller:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- polling -----------------------------------------------------------------------------

    def _decode(self, regs: Sequence[int]) -> dict[str, Value]:
        base = self.address
        sfs: dict[str, int | None] = {}
        for p in self._sf_points:
            raw = decode(p, regs[p.address - base : p.end - base])
            sfs[p.name] = None if raw is None else int(raw)
        values: dict[str, Value] = {}
        for p in self._wanted:
            sf = sfs.get(p.sf) if isinstance(p.sf, str) else None
            values[p.name] = decode(p, regs[p.address - base : p.end - base], sf)
        return values

    async def _read(self, i: int) -> dict[str, Value]:
        if not self._clients:
            raise ConnectionError("FleetPoller: not connected")
        target = self.targets[i]
        endpoint = f"{target.host}:{target.port}"
        tx = Transaction(endpoint, endpoint, target.unit, FC_READ_HOLDING, self.address, self.count)
        try:
            reply = await self._clients[i].read_holding_registers(
                self.address, count=self.count, device_id=target.unit
            )
        except (TimeoutError, ModbusException, OSError) as exc:
            # The audit trail records a fleet poll like any client's request.
            ModbusClient.emit_global(dataclasses.replace(tx, error=str(exc)))
            raise
        if reply.isError():
            ModbusClient.emit_global(dataclasses.replace(tx, exception=reply.exception_code))
            raise ModbusException(f"exception code {reply.exception_code}")
        ModbusClient.emit_global(lambda: dataclasses.replace(tx, values=tuple(reply.registers)))
        return self._decode(reply.registers)

    def poll_once(self) -> list[dict[str, Value] | Exception]:
        """Every device once, concurrently: its values, or the exception its read raised."""

        async def _all() -> list[dict[str, Value] | Exception]:
            results = await asyncio.gather(
                *(self._read(i) for i in range(len(self.targets))), return_exceptions=True
            )
            return [r if isinstance(r, dict) else Exception(str(r)) for r in results]

        return self._loop.run(_all(), self.timeout + 5.0)

    def run(
        self,
        rate_hz: float,
        cycles: int,
        on_poll: Callable[[Poll], None] | None = None,
    ) -> FleetStats:
        """Poll every device ``cycles`` times at ``rate_hz``, slots spread over the period.

        ``on_poll`` is called on the loop thread for each poll: keep it short. Returns the
        latencies and the missed cycles (module docstring).
        """
        period = 1.0 / rate_hz
        n = len(self.targets)
        stats = FleetStats()

        async def device(i: int, t0: float) -> None:
            for k in range(cycles):
                slot = t0 + i * period / n + k * period
                now = time.perf_counter()
                if now < slot:
                    await asyncio.sleep(slot - now)
                elif now >= slot + period:  # a whole period behind: this cycle is gone
                    stats.missed += 1
                    continue
                start = time.perf_counter()
                try:
                    values: dict[str, Value] | None = await self._read(i)
                    error = ""
                except (TimeoutError, ModbusException, OSError) as exc:
                    values, error = None, f"{self.targets[i].host}:{self.targets[i].port}: {exc}"
                done = time.perf_counter()
                if values is None:
                    stats.errors += 1
                    stats.missed += 1
                    stats.first_error = stats.first_error or error
                else:
                    stats.polls += 1
                    stats.latencies.append(done - start)
                    stats.late_starts.append(start - slot)
                    if done > slot + period:
                        stats.missed += 1
                if on_poll is not None:
                    on_poll(Poll(i, slot, start, done, values, error))

        async def _all() -> None:
            t0 = time.perf_counter() + 0.05
            await asyncio.gather(*(device(i, t0) for i in range(n)))

        self._loop.run(_all(), cycles * period + 0.05 + self.timeout * cycles + 5.0)
        return stats

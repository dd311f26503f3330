"""Modbus telemetry: 100 virtual nodes polled at 10 Hz (target p99 < 20 ms, no missed cycle).

Servers: one :class:`SunSpecInverterEndpoint` per node of a real plant (the virtual home's node,
repeated N times), real pymodbus TCP servers on 127.0.0.1 sharing ``--server-loops`` event-loop
threads and one plant lock, with the plant advanced in real time (every 50 ms) as ``harness site
up`` would. They run in this process, or with ``--server-process`` in a child process: on a bench
the devices are not in the harness's process, and on 2 cores two processes also escape one GIL.

Fleet poller (the default, first): :class:`harness.transports.modbus_poller.FleetPoller`, every
node's pymodbus async client on one loop thread, no caller threads; a poll is ONE read of the
``TELEMETRY`` points of model 701 and their scale factors (117 registers), decoded. ``--no-fleet``
skips it.

Sync clients (``--no-sync`` skips them): one :class:`harness.transports.modbus.ModbusClient` per
node, each read through a
:class:`MappedDevice` of the discovered SunSpec map; a poll is ``read_block(701)`` (model 701,
DERMeasureAC: 155 registers, so two requests) and its latency runs from the call to the decoded
values. The sync API blocks its caller, so concurrency comes from caller threads: by default one
per node (``--callers N`` puts the nodes on N threads, polled one after the other), the clients
sharing ``--client-loops`` LoopThreads (0: each client owns one, as the harness does by default).
Each node has a slot every 100 ms, spread evenly over the period (``--burst``: all at once).

A cycle is missed when its poll completes after the node's next slot, or cannot start before it
(the caller is a whole period behind; that cycle is skipped), or fails.

CPU time per poll is reported for this process and the server child: unlike latency it hardly
depends on what else the machine runs. Measured: bench/README.md.

Run: ``uv run python bench/modbus_poll.py`` (both server placements, 10 s each; ``--quick`` for a
short smoke run). Exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

from bench.common import machine_line, table  # noqa: E402

SITE = ROOT / "fixtures/sites/virtual-home.yaml"
HOST = "127.0.0.1"
MODEL = 701
TELEMETRY = [
    f"DERMeasureAC.{name}"
    for name in ("InvSt", "W", "VA", "Var", "PF", "A", "LLV", "Hz", "TotWhInj", "TotWhAbs")
]
"""What a fleet's telemetry needs of model 701 (with scale factors: registers 4-122, one read)."""
TARGET_P99_S = 0.020
PLANT_TICK_S = 0.05
START_TIMEOUT_S = 120.0


# -- servers ----------------------------------------------------------------------------------


class Servers:
    """N SunSpec inverter endpoints over one plant of N homes, advanced in real time."""

    def __init__(self, nodes: int, loops: int) -> None:
        from harness.config.site import load_site
        from harness.transports.aioloop import LoopThread
        from virtual_devices.endpoints.inverter import SunSpecInverterEndpoint
        from virtual_devices.plant.plant import Plant
        from virtual_devices.plant_config import plant_params

        template = plant_params(load_site(SITE), [])
        home = template.nodes[0]
        params = dataclasses.replace(
            template,
            nodes=[dataclasses.replace(home, name=f"n{i:03d}") for i in range(nodes)],
        )
        self.plant = Plant(params)
        for node in self.plant.nodes.values():  # exporting, so the telemetry moves
            node.inverter.set_power_setpoint(0.5 * node.inverter.params.rated_power_w)
        self.plant.advance(10.0)  # ramped and past the setpoints' fine window before serving
        self.lock = threading.RLock()
        self._stack = ExitStack()
        self._stop = threading.Event()
        try:
            self.loops = [LoopThread(f"bench-server-{i}") for i in range(loops)]
            for loop in self.loops:
                self._stack.callback(loop.stop)
            self.endpoints = []
            for i, node in enumerate(self.plant.nodes.values()):
                endpoint = SunSpecInverterEndpoint(
                    node,
                    self.plant,
                    identity={"Mn": "Bench", "Md": "VP-5000", "SN": node.name, "Vr": "1.0"},
                    lock=self.lock,
                    loop=self.loops[i % loops],
                )
                endpoint.start()
                self._stack.callback(endpoint.stop)
                self.endpoints.append(endpoint)
            self._ticker = threading.Thread(target=self._tick, name="bench-plant", daemon=True)
            self._ticker.start()
            self._stack.callback(self._ticker.join, 5.0)
            self._stack.callback(self._stop.set)
        except BaseException:
            self._stack.close()
            raise

    @property
    def ports(self) -> list[int]:
        return [e.port for e in self.endpoints]

    def _tick(self) -> None:
        t0 = time.perf_counter() - self.plant.t
        while not self._stop.wait(PLANT_TICK_S):
            with self.lock:
                self.plant.advance(time.perf_counter() - t0)

    def close(self) -> None:
        self._stack.close()


def serve(nodes: int, loops: int) -> int:
    """Child-process mode: start the servers, print their ports, serve until stdin closes."""
    servers = Servers(nodes, loops)
    try:
        print(json.dumps({"ports": servers.ports}), flush=True)
        sys.stdin.read()  # the parent closes our stdin to stop us
    finally:
        servers.close()
    return 0


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_ports(nodes: int, loops: int, in_child: bool) -> Iterator[tuple[list[int], int]]:
    """The servers' ports and the pid of the process serving them (this one or a child)."""
    if not in_child:
        servers = Servers(nodes, loops)
        try:
            yield servers.ports, os.getpid()
        finally:
            servers.close()
        return
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(nodes)]
    cmd += ["--server-loops", str(loops)]
    child = subprocess.Popen(
        cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        ready, _, _ = select.select([child.stdout], [], [], START_TIMEOUT_S)
        line = child.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"server process gave no ports within {START_TIMEOUT_S:g} s")
        yield list(json.loads(line)["ports"]), child.pid
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


# -- clients ----------------------------------------------------------------------------------


@dataclass
class Config:
    nodes: int
    rate_hz: float
    seconds: float
    server_loops: int
    client_loops: int
    callers: int
    server_process: bool
    burst: bool
    reference: bool = False
    """Not the harness's client: pymodbus async clients on one loop (what the facade costs)."""
    fleet: bool = False
    """The harness's fleet poller: every node on one loop, the telemetry points in one read."""

    def describe(self) -> str:
        servers = "child process" if self.server_process else "this process"
        if self.reference:
            return (
                f"REFERENCE, not the harness's client: servers in {servers}; one asyncio loop "
                "in the calling thread, a pymodbus AsyncModbusTcpClient per node, the same two "
                "reads and the same decode (RegisterMap.decode_registers)"
            )
        if self.fleet:
            return (
                f"FLEET POLLER (harness.transports.modbus_poller): servers in {servers}; every "
                f"node on one loop thread, one read of {len(TELEMETRY)} telemetry points and "
                "their scale factors per poll"
            )
        loops = f"{self.client_loops} shared" if self.client_loops else "one per client"
        callers = f"{self.callers} threads" if self.callers else "one thread per node"
        slots = "all at once" if self.burst else "spread over the period"
        return (
            f"servers in {servers} ({self.server_loops} loop thread(s)); client loops: {loops}; "
            f"callers: {callers}; slots {slots}"
        )


@dataclass
class Result:
    config: Config
    latencies: list[float] = field(default_factory=list)
    late_starts: list[float] = field(default_factory=list)
    polls: int = 0
    missed: int = 0
    errors: int = 0
    first_error: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: float | None = None

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]


def _poll(
    devices: list[tuple[int, Any]],
    t0: float,
    period: float,
    cycles: int,
    phases: list[float],
    result: Result,
) -> None:
    """One caller thread: poll its devices, in slot order, every period."""
    from harness.transports.modbus import ModbusError

    latencies: list[float] = []
    late: list[float] = []
    missed = errors = polls = 0
    for k in range(cycles):
        for i, device in devices:
            slot = t0 + phases[i] + k * period
            now = time.perf_counter()
            if now < slot:
                time.sleep(slot - now)
            elif now >= slot + period:  # a whole period behind: this cycle is gone
                missed += 1
                continue
            start = time.perf_counter()
            try:
                device.read_block(MODEL)
            except ModbusError as exc:
                errors += 1
                missed += 1
                result.first_error = result.first_error or str(exc)
                continue
            done = time.perf_counter()
            polls += 1
            latencies.append(done - start)
            late.append(start - slot)
            if done > slot + period:
                missed += 1
    result.latencies += latencies  # list += list is one bytecode: safe between threads
    result.late_starts += late
    result.missed += missed
    result.errors += errors
    result.polls += polls


def run(config: Config) -> Result:
    from harness.transports.aioloop import LoopThread
    from harness.transports.modbus import MappedDevice, ModbusClient
    from harness.transports.sunspec import discover

    result = Result(config)
    period = 1.0 / config.rate_hz
    cycles = max(1, round(config.seconds * config.rate_hz))
    with (
        ExitStack() as stack,
        server_ports(config.nodes, config.server_loops, config.server_process) as (
            ports,
            server_pid,
        ),
    ):
        loops = [LoopThread(f"bench-client-{i}") for i in range(config.client_loops)]
        for loop in loops:
            stack.callback(loop.stop)
        clients = []
        for i, port in enumerate(ports):
            client = ModbusClient(HOST, port, loop=loops[i % len(loops)] if loops else None)
            stack.callback(client.close)
            client.connect()
            clients.append(client)
        regmap = discover(lambda a, n: clients[0].read_holding(a, n, 1)).regmap
        devices = [(i, MappedDevice(c, regmap, 1)) for i, c in enumerate(clients)]
        n = len(devices)
        phases = [0.0 if config.burst else i * period / n for i in range(n)]
        groups = config.callers or n
        size = -(-n // groups)
        chunks = [devices[g * size : (g + 1) * size] for g in range(groups) if devices[g * size :]]
        t0 = time.perf_counter() + 0.2
        cpu0 = time.process_time()
        server0 = process_cpu_s(server_pid) if config.server_process else None
        threads = [
            threading.Thread(
                target=_poll,
                args=(chunk, t0, period, cycles, phases, result),
                name=f"bench-caller-{g}",
                daemon=True,
            )
            for g, chunk in enumerate(chunks)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(config.seconds + 60.0)
        result.wall_s = time.perf_counter() - t0
        result.cpu_s = time.process_time() - cpu0
        server1 = process_cpu_s(server_pid) if config.server_process else None
        if server0 is not None and server1 is not None:
            result.server_cpu_s = server1 - server0
        if any(t.is_alive() for t in threads):
            raise RuntimeError("a caller thread did not finish within its time")
    return result


def run_fleet(config: Config) -> Result:
    """The same nodes through :class:`FleetPoller`: one loop, one request per poll."""
    from harness.transports.modbus import ModbusClient
    from harness.transports.modbus_poller import FleetPoller, Target
    from harness.transports.sunspec import discover

    result = Result(config)
    cycles = max(1, round(config.seconds * config.rate_hz))
    with server_ports(config.nodes, config.server_loops, config.server_process) as (
        ports,
        server_pid,
    ):
        with ModbusClient(HOST, ports[0]) as probe:
            regmap = discover(lambda a, n: probe.read_holding(a, n, 1)).regmap
        with FleetPoller([Target(HOST, port) for port in ports], regmap, TELEMETRY) as poller:
            cpu0 = time.process_time()
            server0 = process_cpu_s(server_pid) if config.server_process else None
            wall0 = time.perf_counter()
            stats = poller.run(config.rate_hz, cycles)
            result.wall_s = time.perf_counter() - wall0
            result.cpu_s = time.process_time() - cpu0
            server1 = process_cpu_s(server_pid) if config.server_process else None
    if server0 is not None and server1 is not None:
        result.server_cpu_s = server1 - server0
    result.latencies, result.late_starts = stats.latencies, stats.late_starts
    result.polls, result.missed, result.errors = stats.polls, stats.missed, stats.errors
    result.first_error = stats.first_error
    return result


def run_reference(config: Config) -> Result:
    """The same polls with pymodbus's async clients on one event loop, no caller threads."""
    import asyncio

    from pymodbus.client import AsyncModbusTcpClient

    from harness.transports.modbus import MAX_READ_REGISTERS, ModbusClient
    from harness.transports.sunspec import discover

    result = Result(config)
    period = 1.0 / config.rate_hz
    cycles = max(1, round(config.seconds * config.rate_hz))
    with server_ports(config.nodes, config.server_loops, config.server_process) as (
        ports,
        server_pid,
    ):
        with ModbusClient(HOST, ports[0]) as probe:
            regmap = discover(lambda a, n: probe.read_holding(a, n, 1)).regmap
        block = regmap.block(MODEL)
        spans = regmap.split(block.address, block.size, MAX_READ_REGISTERS)
        phases = [0.0 if config.burst else i * period / len(ports) for i in range(len(ports))]

        async def poll(i: int, client: AsyncModbusTcpClient, t0: float) -> None:
            for k in range(cycles):
                slot = t0 + phases[i] + k * period
                now = time.perf_counter()
                if now < slot:
                    await asyncio.sleep(slot - now)
                elif now >= slot + period:
                    result.missed += 1
                    continue
                start = time.perf_counter()
                regs: list[int] = []
                for address, count in spans:
                    reply = await client.read_holding_registers(address, count=count, device_id=1)
                    regs += reply.registers
                regmap.decode_registers(block.address, regs, {})
                done = time.perf_counter()
                result.polls += 1
                result.latencies.append(done - start)
                result.late_starts.append(start - slot)
                if done > slot + period:
                    result.missed += 1

        async def main() -> None:
            clients = [AsyncModbusTcpClient(HOST, port=port, timeout=1.0) for port in ports]
            try:
                for client in clients:
                    await client.connect()
                t0 = time.perf_counter() + 0.2
                cpu0 = time.process_time()
                server0 = process_cpu_s(server_pid) if config.server_process else None
                await asyncio.wait_for(
                    asyncio.gather(*(poll(i, c, t0) for i, c in enumerate(clients))),
                    config.seconds + 60.0,
                )
                result.wall_s = time.perf_counter() - t0
                result.cpu_s = time.process_time() - cpu0
                server1 = process_cpu_s(server_pid) if config.server_process else None
                if server0 is not None and server1 is not None:
                    result.server_cpu_s = server1 - server0
            finally:
                for client in clients:
                    client.close()

        asyncio.run(main())
    return result


# -- report -----------------------------------------------------------------------------------


def _cpu(r: Result) -> str:
    """CPU time per completed poll: this process (clients, and servers when in process) and
    the server child. Unlike latency, it hardly depends on what else the machine runs."""
    if not r.polls:
        return "-"
    text = f"{1e3 * r.cpu_s / r.polls:.2f}"
    if r.server_cpu_s is not None:
        text += f" + server {1e3 * r.server_cpu_s / r.polls:.2f}"
    return text + " ms"


def report(results: list[Result]) -> str:
    rows: list[tuple[str, ...]] = [
        ("servers", "polls", "p50", "p99", "max", "missed", "errors", "CPU/poll", "verdict")
    ]
    notes = []
    for k, r in enumerate(results, start=1):
        cfg = r.config
        ok = r.percentile(99) < TARGET_P99_S and r.missed == 0
        expected = cfg.nodes * max(1, round(cfg.seconds * cfg.rate_hz))
        rows.append(
            (
                f"[{k}] {'child process' if cfg.server_process else 'in process'}"
                + (" (reference)" if cfg.reference else "")
                + (" (fleet poller)" if cfg.fleet else ""),
                f"{r.polls:,}/{expected:,}",
                f"{1e3 * r.percentile(50):.2f} ms",
                f"{1e3 * r.percentile(99):.2f} ms",
                f"{1e3 * max(r.latencies, default=float('nan')):.1f} ms",
                str(r.missed),
                str(r.errors),
                _cpu(r),
                "meets" if ok else "FAILS",
            )
        )
        late = sorted(r.late_starts)
        p99_late = late[round(0.99 * (len(late) - 1))] if late else float("nan")
        notes.append(
            f"[{k}] {cfg.describe()}; p99 late start {1e3 * p99_late:.1f} ms"
            + (f"; first error: {r.first_error}" if r.first_error else "")
        )
    head = results[0].config
    title = (
        f"{head.nodes} nodes x model {MODEL} (2 requests) at {head.rate_hz:g} Hz for "
        f"{head.seconds:g} s; target p99 < {1e3 * TARGET_P99_S:g} ms, no missed cycle; "
        f"{os.cpu_count()} CPUs"
    )
    return "\n".join([title, table(rows), *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 nodes, 1 s")
    parser.add_argument("--nodes", type=int, default=None, help="virtual nodes (default 100)")
    parser.add_argument("--rate", type=float, default=10.0, help="polls per node per second")
    parser.add_argument("--seconds", type=float, default=None, help="duration (default 10 s)")
    parser.add_argument("--server-loops", type=int, default=1, help="server loop threads")
    parser.add_argument("--client-loops", type=int, default=1, help="0: a loop per client")
    parser.add_argument("--callers", type=int, default=0, help="caller threads (0: one per node)")
    parser.add_argument("--burst", action="store_true", help="every node's slot at the same time")
    placement = parser.add_mutually_exclusive_group()
    placement.add_argument("--server-process", action="store_true", help="servers in a child")
    placement.add_argument("--in-process", action="store_true", help="servers in this process")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the pymodbus-async reference run"
    )
    parser.add_argument(
        "--no-sync", action="store_true", help="skip the sync ModbusClient runs (fleet only)"
    )
    parser.add_argument("--no-fleet", action="store_true", help="skip the fleet poller runs")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    load0 = os.getloadavg()[0]
    if args.serve:
        return serve(args.serve, args.server_loops)
    nodes = args.nodes or (10 if args.quick else 100)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    placements = [False, True]
    if args.server_process:
        placements = [True]
    elif args.in_process or args.quick:
        placements = [False]
    configs = [
        Config(
            nodes,
            args.rate,
            seconds,
            args.server_loops,
            args.client_loops,
            args.callers,
            in_child,
            args.burst,
        )
        for in_child in placements
    ]
    fleet = [dataclasses.replace(c, fleet=True) for c in configs]
    results = [] if args.no_fleet else [run_fleet(c) for c in fleet]
    if not args.no_sync:
        results += [run(config) for config in configs]
    if not args.no_sync and not args.no_reference:  # the load without the sync facade
        results.append(run_reference(dataclasses.replace(configs[-1], reference=True)))
    print("modbus_poll: SunSpec telemetry" + " (quick)" * args.quick)
    print(report(results))
    print(machine_line(load0))
    return 0


if __name__ == "__main__":
    sys.exit(main())

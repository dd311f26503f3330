"""Virtual time: simulated seconds per wall second (DESIGN section 10, target >= 1000).

Four measurements in one run:

0. The full campaign as a user runs it: ``harness run`` in a child process against the site
   (default: ``fixtures/sites/virtual-cluster.yaml``, the default of ``harness run``) and the
   example contract, with the workers ``harness run`` chooses (on a virtual site of several homes,
   one pytest-xdist worker per CPU), reading ``simulated_seconds`` and ``wall_seconds`` from its
   verdicts.json. The target (>= 1000) is judged here.
1. The same campaign in one process (``-n 0``), in this process, reading the same two numbers.
   While it runs, light timers around a few methods split its wall time into the plant's
   physics, the virtual CAN nodes, the harness's CAN pumping, SCPI and Modbus round trips, and
   the rest (pytest, site start-up, report), because what limits the ratio is whatever is not
   the plant.
2. The plant alone (``virtual_devices.plant``): a long steady-state advance (steady steps) and a
   1 s fine window after an event, with and without an analyzer capture open.
3. ``--profile``: the campaign again under cProfile in a child process (so the timed run above
   is not slowed by the profiler), top 10 by cumulative time within the harness's own code and
   overall.

Run: ``uv run python bench/sim_speed.py`` (``--quick`` for a short smoke run). Exits 0: a
benchmark reports, it does not fail.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

from bench.common import machine_line, pct, table  # noqa: E402

SITE = ROOT / "fixtures/sites/virtual-cluster.yaml"
CONTRACT = ROOT / "fixtures/contracts/example.yaml"
TARGET_RATIO = 1000.0
START_UP = "site start-up (open_bench: servers, connections)"
COLLECTION = "pytest collection (imports the testplans)"
EVIDENCE = "Allure evidence attached per test (CSV -> PNG plots)"


# -- timers -----------------------------------------------------------------------------------


Label = str | Callable[[tuple[Any, ...]], str]
"""A category, or a function of the call's arguments that picks one."""


@dataclass
class Timers:
    """Wall time and call counts per label, collected by wrapping methods for one run."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    exclusive: frozenset[str] = frozenset()
    """Labels that own all time spent inside them: other timers do not count meanwhile."""
    _owner: str | None = None

    @contextlib.contextmanager
    def wrapped(self, targets: list[tuple[Any, str, Label]]) -> Iterator[None]:
        """Wrap ``owner.name`` (a class's method or a module's function) for each
        (owner, name, label) while the block runs."""
        saved: list[tuple[Any, str, Any]] = []
        try:
            for owner, name, label in targets:
                original = owner.__dict__[name]
                saved.append((owner, name, original))
                setattr(owner, name, self._timed(original, label))
            yield
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)

    def _timed(self, fn: Callable[..., Any], label: Label) -> Callable[..., Any]:
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._owner is not None:
                return fn(*args, **kwargs)
            name = label if isinstance(label, str) else label(args)
            owns = name in self.exclusive
            if owns:
                self._owner = name
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + clock() - t0
                self.calls[name] = self.calls.get(name, 0) + 1
                if owns:
                    self._owner = None

        return timed


SCPI_QUERIES = "SCPI queries"
SCPI_AFTER_WRITE = "SCPI queries right after a write (SYST:ERR? check)"
SCPI_WRITES = "SCPI writes"


class _ScpiSplit:
    """Tells a query that follows a write on the same connection (a set command's error check)
    from other queries. With Nagle's algorithm on, such a query waited for the delayed ACK of the
    write (about 40 ms); the harness now sets TCP_NODELAY on its SCPI sockets, and this row shows
    that it stays as cheap as any other query."""

    def __init__(self) -> None:
        self._wrote: set[int] = set()

    def write(self, args: tuple[Any, ...]) -> str:
        self._wrote.add(id(args[0]))
        return SCPI_WRITES

    def query(self, args: tuple[Any, ...]) -> str:
        if id(args[0]) in self._wrote:
            self._wrote.discard(id(args[0]))
            return SCPI_AFTER_WRITE
        return SCPI_QUERIES


def _campaign_targets() -> list[tuple[Any, str, Label]]:
    """What is charged to a category; none of them calls another, except the site start-up,
    which owns the I/O of connecting (the timers are exclusive inside it)."""
    from _pytest.main import Session

    import harness.bench
    from harness.clock import SimClock
    from harness.transports.can import CanTransport
    from harness.transports.modbus import ModbusClient
    from harness.transports.visa import ScpiConnection
    from virtual_devices.endpoints.bms import VirtualBms
    from virtual_devices.plant.plant import Plant

    scpi = _ScpiSplit()
    targets: list[tuple[Any, str, Label]] = [
        (SimClock, "advance_to", "clock advance (all advancers)"),
        (Plant, "advance", "plant physics"),
        (VirtualBms, "advance", "virtual CAN nodes (encode + send)"),
        (CanTransport, "advance", "harness CAN pump + decode"),
        (ScpiConnection, "query", scpi.query),
        (ScpiConnection, "write", scpi.write),
        (ModbusClient, "_call", "Modbus requests"),
        (harness.bench, "open_bench", START_UP),
        (Session, "perform_collect", COLLECTION),
    ]
    with contextlib.suppress(ImportError):  # evidence plots for Allure, where the tree has them
        from harness.report import allure_wiring

        if "attach_evidence" in allure_wiring.__dict__:
            targets.append((allure_wiring, "attach_evidence", EVIDENCE))
    return targets


# -- the campaign -------------------------------------------------------------------------------


@dataclass
class CampaignResult:
    simulated_s: float
    wall_s: float
    process_wall_s: float
    exit_code: int
    timers: Timers
    cpu_s: float = 0.0
    """CPU time of this process over the run (time.process_time): steadier than wall time
    on a machine others load."""


def set_site(path: Path) -> None:
    """The site every campaign and plant run of this process uses."""
    global SITE
    SITE = path.resolve()


def run_campaign(out: Path, extra: list[str]) -> CampaignResult:
    """``harness run`` in this process, its console output swallowed; timers on."""
    from harness.cli import main

    timers = Timers(exclusive=frozenset({START_UP}))
    argv = ["run", "--site", str(SITE), "--contract", str(CONTRACT), "--out", str(out), "-n", "0"]
    if extra:
        argv += ["--", *extra]
    sink = io.StringIO()
    t0, cpu0 = time.perf_counter(), time.process_time()
    with timers.wrapped(_campaign_targets()), contextlib.redirect_stdout(sink):
        code = main(argv)
    process_wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    verdicts = out / "verdicts.json"
    if not verdicts.is_file():
        raise RuntimeError(f"harness run wrote no verdicts.json (exit {code}):\n{sink.getvalue()}")
    run = json.loads(verdicts.read_text())["run"]
    return CampaignResult(
        float(run["simulated_seconds"]), float(run["wall_seconds"]), process_wall, code, timers, cpu
    )


@dataclass
class ShippedRun:
    """The campaign as ``harness run`` runs it, in a child process with its default workers."""

    simulated_s: float
    wall_s: float
    workers: int
    exit_code: int

    @property
    def ratio(self) -> float:
        return self.simulated_s / self.wall_s if self.wall_s > 0 else float("inf")


def run_as_shipped(out: Path, extra: list[str]) -> ShippedRun:
    """``harness run`` in a child process, with the workers it picks for the site."""
    from harness.commands.run import default_workers
    from harness.config.site import load_site

    cmd = [sys.executable, "-m", "harness.cli", "run", "--site", str(SITE)]
    cmd += ["--contract", str(CONTRACT), "--out", str(out)]
    cmd += ["--", *extra] if extra else []
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    verdicts = out / "verdicts.json"
    if not verdicts.is_file():
        raise RuntimeError(
            f"harness run wrote no verdicts.json (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    run = json.loads(verdicts.read_text())["run"]
    workers = default_workers(load_site(SITE))
    return ShippedRun(
        float(run["simulated_seconds"]), float(run["wall_seconds"]), workers, proc.returncode
    )


def _preimport() -> None:
    """Import every module of the project first, so the profile shows running, not importing."""
    import importlib
    import pkgutil

    for package in ("harness", "virtual_devices"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            with contextlib.suppress(Exception):
                importlib.import_module(info.name)


def profile_child(prof: Path, out: Path, extra: list[str]) -> int:
    """In the child process: the campaign under cProfile, imports excluded."""
    _preimport()
    from harness.cli import main

    argv = ["run", "--site", str(SITE), "--contract", str(CONTRACT), "--out", str(out), "-n", "0"]
    if extra:
        argv += ["--", *extra]
    profiler = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        profiler.enable()
        try:
            main(argv)
        finally:
            profiler.disable()
    profiler.dump_stats(str(prof))
    return 0


def profile_campaign(out: Path, extra: list[str], top: int = 10) -> str:
    """The campaign under cProfile in a child process; the top entries by cumulative time."""
    prof = out.parent / "campaign.prof"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--site", str(SITE)]
    cmd += ["--profile-child", str(prof), str(out)]
    cmd += ["--", *extra] if extra else []
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0 or not prof.is_file():
        return f"profiling failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
    text = io.StringIO()
    stats = pstats.Stats(str(prof), stream=text)
    stats.sort_stats("cumulative")
    text.write("-- by cumulative time, the project's own functions --\n")
    stats.print_stats(r"/(harness|virtual_devices|testplans)/", top)
    stats.sort_stats("tottime")
    text.write("-- by own time, everything --\n")
    stats.print_stats(top)
    return "\n".join(
        line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")
        for line in text.getvalue().splitlines()
        if line.strip() and "List reduced" not in line
    )


# -- the plant alone ----------------------------------------------------------------------------


@dataclass
class PlantRun:
    label: str
    simulated_s: float
    wall_s: float
    steps: int

    @property
    def ratio(self) -> float:
        return self.simulated_s / self.wall_s if self.wall_s > 0 else float("inf")


def _plant() -> Any:
    from harness.config.site import load_site
    from virtual_devices.plant.plant import Plant
    from virtual_devices.plant_config import plant_params

    return Plant(plant_params(load_site(SITE), []))


def _timed_advance(plant: Any, label: str, duration: float) -> PlantRun:
    start, steps = plant.t, plant.steps
    t0 = time.perf_counter()
    plant.advance(start + duration)
    wall = time.perf_counter() - t0
    return PlantRun(label, duration, wall, plant.steps - steps)


def plant_runs(steady_s: float) -> list[PlantRun]:
    """Steady state at rated export, then 1 s fine windows after an event (capture off, on)."""
    plant = _plant()
    for node in plant.nodes.values():
        node.inverter.set_power_setpoint(node.inverter.params.rated_power_w)
    plant.advance(plant.t + 10.0)  # ramped up and past the setpoint's fine window
    runs = [_timed_advance(plant, f"steady state, {steady_s:g} s steady steps", steady_s)]
    plant.mark_event("bench")
    runs.append(_timed_advance(plant, "1 s fine window after an event", 1.0))
    plant.advance(plant.t + 2.0)
    handle = plant.recorder.start(plant.recorder.channels())
    plant.mark_event("bench")
    runs.append(_timed_advance(plant, "1 s fine window, capture of all channels", 1.0))
    plant.recorder.stop(handle)
    return runs


# -- report -------------------------------------------------------------------------------------


def report(shipped: ShippedRun, campaign: CampaignResult, plant: list[PlantRun]) -> str:
    ratio = campaign.simulated_s / campaign.wall_s if campaign.wall_s > 0 else float("inf")
    rows: list[tuple[str, ...]] = [("measure", "value", "target", "")]
    rows.append(
        (
            f"campaign as `harness run` runs it ({shipped.workers or 'no'} workers)",
            f"{shipped.ratio:,.0f}  ({shipped.simulated_s:g} s / {shipped.wall_s:g} s)",
            f">= {TARGET_RATIO:,.0f}",
            "meets" if shipped.ratio >= TARGET_RATIO else "BELOW",
        )
    )
    rows.append(("  its exit status", str(shipped.exit_code), "0 (full run)", ""))
    rows.append(
        (
            "campaign simulated / wall (verdicts.json)",
            f"{ratio:,.0f}  ({campaign.simulated_s:g} s / {campaign.wall_s:g} s)",
            "(one process, -n 0)",
            "",
        )
    )
    rows.append(("campaign exit status", str(campaign.exit_code), "0 (full run)", ""))
    rows.append(("process wall incl. imports", f"{campaign.process_wall_s:.2f} s", "", ""))
    cpu_ratio = campaign.simulated_s / campaign.cpu_s if campaign.cpu_s > 0 else float("inf")
    rows.append(
        (
            "process CPU (time.process_time)",
            f"{campaign.cpu_s:.2f} s  ({cpu_ratio:,.0f} simulated s per CPU s)",
            "",
            "",
        )
    )
    for run in plant:
        # Only the steady state is held to the target: a fine window is 1000 steps of 1 ms per
        # simulated second by design, so its ratio is the per-step cost, shown for information.
        steady = run is plant[0]
        per_step = 1e6 * run.wall_s / run.steps
        rows.append(
            (
                f"plant alone: {run.label}",
                f"{run.ratio:,.0f}  ({run.steps} steps, {per_step:.1f} us/step)",
                f">= {TARGET_RATIO:,.0f}" if steady else "(info)",
                ("meets" if run.ratio >= TARGET_RATIO else "BELOW") if steady else "",
            )
        )
    out = [table(rows), "", "where the campaign's wall time went (of verdicts.json wall_seconds):"]
    t: dict[str, float] = collections.defaultdict(float, campaign.timers.seconds)
    n: dict[str, int] = collections.defaultdict(int, campaign.timers.calls)
    wall = campaign.wall_s
    split: list[tuple[str, str, str, str]] = [("category", "wall", "share", "calls")]

    def row(label: str, seconds: float, calls: str = "") -> None:
        split.append((label, f"{seconds:.3f} s", pct(seconds, wall), calls))

    clock = t["clock advance (all advancers)"]
    inside = ("plant physics", "virtual CAN nodes (encode + send)", "harness CAN pump + decode")
    for label in inside:
        row(f"  in clock: {label}", t[label], str(n[label]))
    row("  in clock: other", clock - sum(t[label] for label in inside))
    for label in (SCPI_QUERIES, SCPI_AFTER_WRITE, SCPI_WRITES, "Modbus requests"):
        per = f" x {1e3 * t[label] / n[label]:.2f} ms" if n[label] else ""
        row(f"  I/O: {label}", t[label], f"{n[label]}{per}")
    io_s = t[SCPI_QUERIES] + t[SCPI_AFTER_WRITE] + t[SCPI_WRITES] + t["Modbus requests"]
    row(f"  {START_UP}", t[START_UP])
    row(f"  {COLLECTION}", t[COLLECTION])
    row(f"  {EVIDENCE}", t[EVIDENCE], str(n[EVIDENCE]))
    rest = wall - clock - io_s - t[START_UP] - t[COLLECTION] - t[EVIDENCE]
    row("  the rest: pytest per test, fixtures, scenario code", rest)
    row("  total outside the plant", wall - t["plant physics"])
    out.append(table(split))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one scenario, short plant")
    parser.add_argument("--profile", action="store_true", help="cProfile the campaign (top 10)")
    parser.add_argument(
        "--site", type=Path, default=SITE, help=f"site file (default {SITE.relative_to(ROOT)})"
    )
    parser.add_argument("--profile-child", nargs=2, metavar=("PROF", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    set_site(args.site)
    load0 = os.getloadavg()[0]
    if args.profile_child:
        prof, out = (Path(p) for p in args.profile_child)
        return profile_child(prof, out, args.pytest_args)
    extra = ["-k", "telemetry"] if args.quick else []
    steady = 60.0 if args.quick else 3600.0
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        shipped = run_as_shipped(Path(tmp) / "shipped", extra)
        campaign = run_campaign(Path(tmp) / "timed", extra)
        plant = plant_runs(steady)
        mode = " (quick)" if args.quick else ""
        print(f"sim_speed: simulated seconds per wall second{mode}, site {SITE.name}")
        print(report(shipped, campaign, plant))
        if args.profile:
            print("\ncProfile of the campaign (child process, imports excluded), top 10:")
            print(profile_campaign(Path(tmp) / "profiled", extra))
    print(machine_line(load0))
    return 0


if __name__ == "__main__":
    sys.exit(main())

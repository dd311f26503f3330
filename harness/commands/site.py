"""`harness site up`: serve a virtual site out of process, in real time, until interrupted.

Anyone can then talk to it as to a bench: mbpoll or a SunSpec client on the Modbus ports, a CAN
tool through python-can-remote, a VISA client on the instruments, or the harness itself with a
site file that points at those endpoints. The endpoints file is written (atomically) only once
every endpoint listens, so a script can wait for it; it is removed again on shutdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from harness.config.errors import ConfigErrors

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SETUP = 2
WATCH_S = 0.2
"""How often the main thread checks that the real-time driver is still alive."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    site = sub.add_parser("site", help="serve a virtual site out of process")
    actions = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="run a virtual site in real time until Ctrl-C or SIGTERM",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--site", default="fixtures/sites/virtual-cluster.yaml")
    up.add_argument(
        "--endpoints", required=True, help="JSON file to write the endpoints to (per device key)"
    )
    up.add_argument(
        "--tick-ms",
        type=float,
        default=2.0,
        help="real-time driver period, ms (CAN frames leave at most this late; default 2)",
    )
    up.add_argument("-v", "--verbose", action="store_true", help="log endpoint activity")
    up.set_defaults(handler=cmd_up)


def cmd_up(args: argparse.Namespace, console: Console) -> int:
    from harness.checks import check_site

    site_path = Path(args.site)
    out = Path(args.endpoints)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)  # a stale file must not send a waiting script to dead ports
    except OSError as exc:
        raise ConfigErrors.single(out, f"cannot write the endpoints file: {exc}") from None
    site, summary = check_site(site_path)
    if not site.has_virtual:
        raise ConfigErrors.single(site_path, "no virtual endpoint to serve (every one is live)")
    if not 0.1 <= args.tick_ms <= 100:
        raise ConfigErrors.single(site_path, f"--tick-ms must be in [0.1, 100], got {args.tick_ms}")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from virtual_devices.realtime import RealTimeSite

    stop = threading.Event()
    previous = _on_signals(stop)
    try:
        try:
            rt = RealTimeSite.start(site, period_s=args.tick_ms / 1000.0)
        except OSError as exc:
            console.print(f"cannot start the virtual site: {exc}", style="red", highlight=False)
            return EXIT_SETUP
        try:
            description = rt.describe()
            _write_atomically(out, description)
            _print_endpoints(console, summary, description, out)
            while not stop.wait(WATCH_S):
                if not rt.driver.running:
                    console.print(
                        f"the virtual site stopped: {rt.driver.error!r}", style="bold red"
                    )
                    return EXIT_FAILED
            console.print("stopping", highlight=False)
        finally:
            rt.stop()
            with contextlib.suppress(OSError):
                out.unlink(missing_ok=True)
            stats = rt.driver.stats
            console.print(
                f"stopped: {stats.ticks} ticks of {args.tick_ms:g} ms, woke late by "
                f"{stats.late_mean_s * 1e3:.3f} ms mean, {stats.late_max_s * 1e3:.3f} ms max, "
                f"{stats.skipped} skipped",
                highlight=False,
            )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGINT and SIGTERM ask for a clean stop; returns the handlers they replaced."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader sees no file or the whole file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _print_endpoints(
    console: Console, summary: str, description: dict[str, Any], out: Path
) -> None:
    console.print(f"[bold]harness site up[/bold]: {summary}", highlight=False)
    for key, entry in description["endpoints"].items():
        where = entry.get("channel") or entry.get("resource") or f"{entry['host']}:{entry['port']}"
        unit = f" unit {entry['unit']}" if "unit" in entry else ""
        console.print(f"  {key:<18} {entry['protocol']:<10} {where}{unit}", highlight=False)
    console.print(f"endpoints: {out}; Ctrl-C or SIGTERM stops", highlight=False)

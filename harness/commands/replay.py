"""`harness replay LOG --dbc FILE`: run the CAN conformance checks on a recorded log.

A capture from the field (BLF, ASC, or any format python-can's ``LogReader`` reads) is checked
exactly as a live bus is: every frame decoded against the DBC, required messages present with
their length, cycle times within ``--tolerance``, signals inside their declared ranges, unknown
ids and the heartbeat reported. Exit status: 0 conforming, 1 violations, 2 bad input.

Which messages are required: the BMS map's (``--map``, e.g. ``fixtures/maps/pylontech_lv_bms.yaml``,
which also names the heartbeat), else those of ``--node``, else every message with a cycle time.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

import can
from rich.console import Console
from rich.table import Table

from harness.config.errors import ConfigErrors

if TYPE_CHECKING:
    from harness.conformance.can import Checked

EXIT_OK, EXIT_VIOLATIONS, EXIT_SETUP = 0, 1, 2
DEFAULT_TOLERANCE_PCT = 10.0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = sub.add_parser(
        "replay",
        help="run the CAN conformance checks on a recorded log (BLF, ASC, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("log", type=Path, help="recorded CAN log (.blf, .asc, .log, .trc, ...)")
    replay.add_argument("--dbc", type=Path, required=True, help="the DBC the traffic must follow")
    replay.add_argument("--map", type=Path, help="BMS map: required messages and heartbeat")
    replay.add_argument("--node", help="require the periodic messages this DBC node sends")
    replay.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE_PCT,
        metavar="PCT",
        help=f"allowed cycle-time deviation, %% (default {DEFAULT_TOLERANCE_PCT:g})",
    )
    replay.set_defaults(handler=cmd_replay)


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    from harness.checks import check_dbc
    from harness.conformance.can import CanMonitor, Checked, periodic_messages
    from harness.devices.bms import load_bms_map
    from harness.transports.can import load_database

    if not args.log.is_file():
        raise ConfigErrors.single(args.log, "file not found")
    if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
        raise ConfigErrors.single(args.log, f"--tolerance must be >= 0 %, got {args.tolerance}")
    check_dbc(args.dbc)  # a bad DBC is an input error naming its line
    db = load_database(args.dbc)
    heartbeat = None
    if args.map is not None:
        bms_map = load_bms_map(args.map, db)
        required, heartbeat = bms_map.required(db), bms_map.heartbeat
    elif args.node is not None:
        if not any(args.node in m.senders for m in db.messages):
            raise ConfigErrors.single(args.dbc, f"no message of the DBC is sent by {args.node!r}")
        required = periodic_messages(db, args.node)
    else:
        required = periodic_messages(db)
    monitor = CanMonitor(db, required, heartbeat=heartbeat)
    try:
        with can.LogReader(args.log) as reader:
            monitor.process_all(reader)
    except (ValueError, OSError, EOFError, can.CanError) as exc:
        raise ConfigErrors.single(args.log, f"cannot read the log: {exc}") from None
    except Exception as exc:  # a reader's parser error on a corrupt file
        raise ConfigErrors.single(args.log, f"cannot read the log: {exc!r}") from None
    checked = Checked.judge(monitor.report(), args.tolerance)
    console.print(_table(checked, args), soft_wrap=True)
    for line in checked.violations:
        console.print(f"[red]VIOLATION[/red] {line}", highlight=False, soft_wrap=True)
    for line in checked.warnings:
        console.print(f"[yellow]warning[/yellow] {line}", highlight=False, soft_wrap=True)
    report = checked.report
    verdict = "conforming" if checked.conforming else f"{len(checked.violations)} violation(s)"
    console.print(
        f"{report.frames} frames, {len(report.required)} required messages: {verdict}",
        highlight=False,
    )
    return EXIT_OK if checked.conforming else EXIT_VIOLATIONS


def _table(checked: Checked, args: argparse.Namespace) -> Table:
    report = checked.report
    table = Table(title=f"CAN conformance: {args.log} against {args.dbc.name}")
    for column in ("id", "message", "required", "frames", "DLC", "cycle", "periods", "dev."):
        table.add_column(column, justify="right" if column in ("frames", "DLC", "dev.") else "left")
    table.add_column("status")
    rows = list(report.messages.values())
    if report.heartbeat is not None:
        rows.append(report.heartbeat)
    for m in rows:
        bad = [v for v in checked.violations if v.startswith(f"{m.name}:")] + [
            v for v in checked.violations if v.startswith(f"{m.name}.")
        ]
        role = "heartbeat" if m is report.heartbeat else ("yes" if m.required else "no")
        periods = (
            f"{m.min_period:.3f}-{m.max_period:.3f} s"
            if m.min_period is not None and m.max_period is not None
            else "-"
        )
        deviation = (
            "-"
            if m.deviation_pct is None
            else ("inf" if math.isinf(m.deviation_pct) else f"{m.deviation_pct:.2f} %")
        )
        table.add_row(
            f"0x{m.frame_id:X}{'x' if m.extended else ''}",
            m.name,
            role,
            str(m.count),
            str(m.length),
            f"{m.period_s:g} s" if m.period_s else "-",
            periods,
            deviation,
            "[red]violation[/red]" if bad else "ok",
        )
    return table

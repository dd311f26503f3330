"""Progress of a run, one line per scenario as it finishes (rich)."""

from __future__ import annotations

import time

import pytest
from rich.console import Console


class ProgressReporter:
    """A pytest plugin object that prints each scenario's outcome and wall time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._start: dict[str, float] = {}
        self.total = 0
        self.done = 0

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)
        self.console.print(f"[bold]{self.total} scenario runs collected[/bold]")

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        """Under xdist the controller collects nothing itself: every worker reports the same."""
        if not self.total:
            self.total = len(ids)
            self.console.print(f"[bold]{self.total} scenario runs collected[/bold]")

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self._start[nodeid] = time.perf_counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.done += 1
            took = time.perf_counter() - self._start.get(report.nodeid, time.perf_counter())
            simulated = dict(report.user_properties).get("simulated_seconds")
            sim = f"{simulated:.1f} s simulated, " if isinstance(simulated, float) else ""
            style = {"passed": "green", "skipped": "yellow"}.get(report.outcome, "red")
            text = "ran" if report.outcome == "passed" else report.outcome
            self.console.print(
                f"[{self.done}/{self.total}] [{style}]{text:>7}[/{style}] {report.nodeid}"
                f"  ({sim}{took:.1f} s wall)"
            )
            if report.outcome == "failed" and report.longrepr is not None:
                self.console.print(f"        {_last_line(str(report.longrepr))}", style="red")


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""

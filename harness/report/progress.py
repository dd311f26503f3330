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
        self._sim_start: dict[str, float | None] = {}
        self._config: pytest.Config | None = None
        self.total = 0
        self.done = 0

    def pytest_configure(self, config: pytest.Config) -> None:
        self._config = config

    def _sim_now(self) -> float | None:
        from harness.pytest_plugin import simulated_now

        return simulated_now(self._config) if self._config is not None else None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)
        self.console.print(f"[bold]{self.total} scenario runs collected[/bold]")

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self._start[nodeid] = time.perf_counter()
        self._sim_start[nodeid] = self._sim_now()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.done += 1
            took = time.perf_counter() - self._start.get(report.nodeid, time.perf_counter())
            sim_start, sim_end = self._sim_start.get(report.nodeid), self._sim_now()
            sim = ""
            if sim_end is not None:
                sim = f"{sim_end - (sim_start or 0.0):.1f} s simulated, "
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

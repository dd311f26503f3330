"""Operator steps: a breaker worked by hand, asked for in the terminal.

The interactive tests run the driver in a child process whose controlling terminal is a pty
(``pty.fork``), exactly as a person's terminal would be; the test plays the person on the pty's
master side. Non-interactive runs (no controlling terminal, or CI set) must fail the step at
once with a message that says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.clock import SimClock
from harness.config.errors import ConfigErrors
from harness.config.site import load_site
from harness.devices.operator import OperatorBreaker
from harness.devices.prompts import OperatorStepError, PromptService
from harness.devices.registry import default_registry
from harness.devices.roles import DeviceError
from harness.transports import guard
from tests.harness_runner import ROOT, SITE

CHILD = textwrap.dedent(
    """
    import json, sys
    from harness.clock import SimClock
    from harness.devices.operator import OperatorBreaker
    from harness.devices.roles import DeviceError
    from harness.safety.audit import WriteAudit

    clock = SimClock(start=12.5)
    audit = WriteAudit(None, now=clock.now)
    breaker = OperatorBreaker.from_options("pcc_breaker", clock, {"timeout": sys.argv[1]})
    outcome = {}
    for step in sys.argv[2:]:
        try:
            getattr(breaker, step)()
            outcome[step] = "done"
        except DeviceError as exc:
            outcome[step] = f"error: {exc}"
        clock.sleep(1.0)
    result = {
        "outcome": outcome,
        "closed": breaker.is_closed(),
        "records": [r.__dict__ for r in breaker.records],
        "audit": [e["write"] for e in audit.entries if e["transport"] == "operator"],
        "audit_t": [e["t"] for e in audit.entries if e["transport"] == "operator"],
    }
    print("RESULT " + json.dumps(result), flush=True)
    """
)


class Person:
    """The master side of a pty whose slave is the child's controlling terminal."""

    def __init__(self, timeout: str, *steps: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "HARNESS_NONINTERACTIVE")}
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, "-c", CHILD, timeout, *steps]
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its controlling terminal is the pty
            os.chdir(ROOT)
            os.execve(sys.executable, argv, env)
        self.seen = ""

    def expect(self, text: str, within: float = 8.0) -> str:
        deadline = time.monotonic() + within
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"never saw {text!r}; the terminal showed:\n{self.seen}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"terminal closed before {text!r}:\n{self.seen}")
                self.seen += chunk.decode("utf-8", errors="replace")
        return self.seen

    def type(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def result(self) -> dict[str, object]:
        """What the child printed last: ``RESULT {json}`` on one line."""
        self.expect("RESULT ")
        deadline = time.monotonic() + 8.0
        while "\n" not in self.seen.split("RESULT ", 1)[1] and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                self.seen += os.read(self.fd, 4096).decode("utf-8", errors="replace")
        return dict(json.loads(self.seen.split("RESULT ", 1)[1].splitlines()[0]))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def person() -> Iterator[list[Person]]:
    people: list[Person] = []
    try:
        yield people
    finally:
        for p in people:
            p.close()


def test_operator_opens_and_declines_on_the_terminal(person: list[Person]) -> None:
    p = Person("5 s", "open", "close")
    person.append(p)
    p.expect("Open the PCC breaker now.")
    p.expect("waiting up to 5 s")
    time.sleep(0.2)
    p.type("")  # Enter: done
    p.expect("Close the PCC breaker now.")
    p.type("abort")
    result = p.result()
    assert result["outcome"] == {
        "open": "done",
        "close": "error: pcc_breaker: the operator declined step 'Close the PCC breaker now.' "
        "(answered 'abort')",
    }
    assert result["closed"] is False  # opened, and the close was declined
    records = result["records"]
    assert isinstance(records, list) and len(records) == 2
    first = records[0]
    assert first["instruction"] == "Open the PCC breaker now." and first["answer"] == ""
    assert first["asked_at"] == first["answered_at"] == 12.5  # site clock, lock-step
    assert first["waited_s"] >= 0.2
    assert records[1]["asked_at"] == 13.5
    audit = result["audit"]
    assert audit == [
        "ask: Open the PCC breaker now.",
        f"done (answer '' after {first['waited_s']:.1f} s): Open the PCC breaker now.",
        "ask: Close the PCC breaker now.",
        "declined ('abort'): Close the PCC breaker now.",
    ]
    assert result["audit_t"] == [12.5, 12.5, 13.5, 13.5]


def test_type_ahead_does_not_confirm_a_step(person: list[Person]) -> None:
    """An Enter typed before the prompt appeared is discarded; the step waits for a fresh one."""
    p = Person("0.8 s", "open")
    person.append(p)
    p.type("")  # typed as the process starts, long before the question
    p.expect("Open the PCC breaker now.")
    result = p.result()
    assert "no answer to operator step" in str(result["outcome"])


def test_no_answer_times_out_cleanly(person: list[Person]) -> None:
    started = time.monotonic()
    p = Person("0.5 s", "open")
    person.append(p)
    p.expect("Open the PCC breaker now.")
    p.expect("no answer: the step failed (timeout)")
    result = p.result()
    assert result["outcome"] == {
        "open": "error: pcc_breaker: no answer to operator step 'Open the PCC breaker now.' "
        "within 0.5 s"
    }
    assert result["closed"] is True and result["records"] == []
    assert result["audit"][-1] == "no answer within 0.5 s: Open the PCC breaker now."
    assert time.monotonic() - started < 8


def test_ci_run_fails_the_step_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    breaker = OperatorBreaker.from_options("pcc_breaker", SimClock(), {"timeout": "600 s"})
    started = time.monotonic()
    with pytest.raises(
        OperatorStepError, match=r"non-interactive \(CI is set in the environment\)"
    ):
        breaker.open()
    assert time.monotonic() - started < 1.0
    assert breaker.is_closed()  # nothing was confirmed


def test_run_without_a_terminal_fails_the_step_at_once() -> None:
    """A process with no controlling terminal (a service, cron, CI runner) and stdin not a tty."""
    code = (
        "from harness.clock import SimClock\n"
        "from harness.devices.operator import OperatorBreaker\n"
        "b = OperatorBreaker.from_options('pcc_breaker', SimClock(), {'timeout': '600 s'})\n"
        "b.open()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HARNESS_NONINTERACTIVE")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,  # no controlling terminal
    )
    assert proc.returncode != 0
    assert "OperatorStepError" in proc.stderr
    assert "non-interactive (no controlling terminal (/dev/tty" in proc.stderr
    assert time.monotonic() - started < 10


def test_dry_run_does_not_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    """The write gate keeps an operator step from being asked, as it keeps any write off."""
    monkeypatch.setenv("CI", "true")  # asking would fail: proves it was not asked
    seen: list[guard.WriteRequest] = []

    def refuse(request: guard.WriteRequest) -> bool:
        seen.append(request)
        return False

    uninstall = guard.install(refuse)
    try:
        breaker = OperatorBreaker.from_options("pcc_breaker", SimClock(), {})
        breaker.open()
    finally:
        uninstall()
    assert breaker.is_closed() and breaker.records == []
    assert [(r.transport, r.target, r.what) for r in seen] == [
        ("operator", "pcc_breaker", "ask: Open the PCC breaker now.")
    ]


def test_options_are_checked() -> None:
    clock = SimClock()
    with pytest.raises(DeviceError, match="unknown operator option"):
        OperatorBreaker.from_options("pcc_breaker", clock, {"timout": "5 s"})
    with pytest.raises(DeviceError, match=r"options\.timeout"):
        OperatorBreaker.from_options("pcc_breaker", clock, {"timeout": 5})
    breaker = OperatorBreaker.from_options(
        "pcc_breaker", clock, {"timeout": "2 min", "label": "main breaker"}
    )
    assert breaker.prompts.timeout_s == 120.0
    assert breaker.identity().model == "main breaker (operator steps)"
    assert isinstance(breaker.prompts, PromptService)


def _site(tmp_path: Path, breaker_yaml: str) -> Path:
    text = SITE.read_text()
    start = text.index("  pcc_breaker:")
    end = text.index("\n\n", start)
    path = SITE.parent / f".test-operator-{tmp_path.name}.yaml"
    path.write_text(text[:start] + breaker_yaml + text[end:])
    return path


def test_site_file_names_the_operator_driver(tmp_path: Path) -> None:
    path = _site(
        tmp_path,
        "  pcc_breaker:\n    driver: operator\n    endpoint: {transport: manual}\n"
        "    options: {timeout: 90 s}",
    )
    try:
        site = load_site(path)
        cfg = site.spec.instruments.pcc_breaker
        assert cfg is not None and cfg.endpoint.transport == "manual"
        assert not site.is_virtual  # a person switches real power: the switching gate applies
        breaker = default_registry().build(
            "breaker", cfg.driver, "pcc_breaker", cfg.endpoint, cfg, SimClock(), site
        )
        assert isinstance(breaker, OperatorBreaker) and breaker.prompts.timeout_s == 90.0
    finally:
        path.unlink()
    bad = _site(
        tmp_path, "  pcc_breaker:\n    driver: modbus_coil\n    endpoint: {transport: manual}"
    )
    try:
        with pytest.raises(ConfigErrors, match="driver 'operator' goes with endpoint"):
            load_site(bad)
    finally:
        bad.unlink()

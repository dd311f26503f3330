"""Operator prompts: a step a person performs when the site has no automated device for it.

``PromptService.confirm`` writes the instruction to the operator's terminal ("Open the PCC breaker
now, then press Enter"), waits at most a timeout (wall time: a person's time, not the site's) and
records the answer with the site-clock time it was asked and answered. The record also goes to
the write audit (harness.transports.guard, transport ``operator``), which is the run's evidence,
and a dry run or a safety block keeps the step from being asked at all, as it keeps any other
write off the wire.

Why the controlling terminal (``/dev/tty``) and not stdin: the harness runs scenarios inside
pytest, whose capture replaces file descriptor 0 with /dev/null for the whole session, so stdin
is never the operator's keyboard there. ``/dev/tty`` is the terminal the run was started from,
whatever pytest did to the standard streams, and the prompt is shown on it too (stdout is
captured). A run without one (CI, a service, cron, ``setsid``), or with ``CI`` set in its
environment, is non-interactive: the step fails at once with a message saying why, never hangs.
Input typed before the prompt appeared is discarded, so a stray Enter cannot confirm a step.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.clock import Clock
from harness.devices.roles import DeviceError
from harness.transports import guard

TTY = "/dev/tty"
DEFAULT_TIMEOUT_S = 300.0
DECLINE = ("abort", "no", "n")
"""Answers that refuse the step (it then fails, naming the answer)."""


class OperatorStepError(DeviceError):
    """An operator step could not be done: no terminal, no answer in time, or declined."""


class NonInteractive(Exception):
    """There is no person to ask (the reason says why)."""


class Terminal(Protocol):
    def write(self, text: str) -> None: ...
    def readline(self, timeout_s: float) -> str | None:
        """One line without its newline, or None when ``timeout_s`` passed first."""

    def close(self) -> None: ...


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class TtyTerminal:
    """The controlling terminal, opened for one question."""

    def __init__(self, path: str = TTY) -> None:
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        except OSError as exc:
            raise NonInteractive(f"no controlling terminal ({path}: {exc.strerror})") from None
        if not os.isatty(self.fd):
            os.close(self.fd)
            raise NonInteractive(f"{path} is not a terminal")
        with contextlib.suppress(termios.error):
            termios.tcflush(self.fd, termios.TCIFLUSH)  # drop type-ahead

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode("utf-8", errors="replace"))

    def readline(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self.fd, 1024)
            if not chunk:  # the terminal went away (hang-up)
                raise NonInteractive("the terminal closed while waiting for an answer")
            buffer += chunk
        return buffer.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_terminal() -> Terminal:
    """The operator's terminal, or :class:`NonInteractive` saying why there is none."""
    if _flag("CI"):
        raise NonInteractive("CI is set in the environment")
    if _flag("HARNESS_NONINTERACTIVE"):
        raise NonInteractive("HARNESS_NONINTERACTIVE is set in the environment")
    return TtyTerminal()


@dataclass(frozen=True)
class Answer:
    """One operator step as it happened: the evidence a witness signs."""

    device: str
    instruction: str
    answer: str
    asked_at: float
    """Site-clock time, s, when the instruction was shown."""
    answered_at: float
    """Site-clock time, s, of the answer (equal to asked_at on a lock-step clock)."""
    waited_s: float
    """Wall time the operator took, s."""
    wall_time: str
    """Local wall-clock time of the answer (ISO 8601), for the paper trail."""


@dataclass
class PromptService:
    """Asks the operator; ``timeout_s`` is the default wait for an answer (site-file option)."""

    clock: Clock
    timeout_s: float = DEFAULT_TIMEOUT_S
    terminal: Callable[[], Terminal] = open_terminal
    records: list[Answer] = field(default_factory=list)

    def confirm(
        self, device: str, instruction: str, timeout_s: float | None = None
    ) -> Answer | None:
        """Show ``instruction``, wait for Enter; the :class:`Answer`, or None when a dry run (or a
        safety block) kept the step from being asked. Raises :class:`OperatorStepError` when there
        is no terminal, no answer within the timeout, or the operator declines."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        if not guard.permit(guard.WriteRequest("operator", device, f"ask: {instruction}")):
            return None
        try:
            terminal = self.terminal()
        except NonInteractive as exc:
            raise OperatorStepError(
                f"{device}: operator step {instruction!r} needs a person at a terminal, but this "
                f"run is non-interactive ({exc}); run it from a terminal, or wire an automated "
                f"driver for {device} in the site file"
            ) from None
        asked_at = self.clock.now()
        started = time.monotonic()
        try:
            terminal.write(
                f"\n[operator] {instruction}\n"
                f"  Press Enter when done (or type 'abort' to fail the step); "
                f"waiting up to {wait:g} s: "
            )
            try:
                line = terminal.readline(wait)
            except NonInteractive as exc:
                raise OperatorStepError(f"{device}: {instruction!r}: {exc}") from None
            if line is None:
                terminal.write("\n[operator] no answer: the step failed (timeout)\n")
        finally:
            terminal.close()
        waited = time.monotonic() - started
        if line is None:
            self._audit(device, f"no answer within {wait:g} s: {instruction}")
            raise OperatorStepError(
                f"{device}: no answer to operator step {instruction!r} within {wait:g} s"
            )
        answer = Answer(
            device=device,
            instruction=instruction,
            answer=line.strip(),
            asked_at=asked_at,
            answered_at=self.clock.now(),
            waited_s=round(waited, 3),
            wall_time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        self.records.append(answer)
        if answer.answer.lower() in DECLINE:
            self._audit(device, f"declined ({answer.answer!r}): {instruction}")
            raise OperatorStepError(
                f"{device}: the operator declined step {instruction!r} (answered {answer.answer!r})"
            )
        self._audit(device, f"done (answer {answer.answer!r} after {waited:.1f} s): {instruction}")
        return answer

    @staticmethod
    def _audit(device: str, what: str) -> None:
        """Into the write audit with the audit's own site-clock time (the outcome is moot)."""
        guard.permit(guard.WriteRequest("operator", device, what))

"""A null-modem cable in software: two pseudo-terminals joined by socat, for tests of Modbus RTU.

What one end writes the other reads, byte for byte, through the kernel's tty layer, so a serial
server on one end and a serial client on the other use pyserial exactly as on an RS-485 adapter
(baud rate and parity are accepted and have no effect on a pty). Each pair lives in its own
directory (a test's ``tmp_path``), so pairs of parallel tests (xdist) never meet.

socat is started with ``-d -d`` so that its notices (the pty names, the start of the transfer
loop) go to ``socat.log`` in that directory; a pair that does not come up in time is reported
with that log. The process is always terminated when the context exits (killed if it does not
stop within a second) and reaped, and socat removes its links as it exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_NOTICE = "starting data transfer loop"


@dataclass(frozen=True)
class SerialPair:
    """Two joined serial ports: ``a`` and ``b`` are paths to open with pyserial."""

    a: str
    b: str
    pid: int
    log: Path


def _linked(path: Path) -> bool:
    """The link exists and points at a pty device that exists."""
    return path.is_symlink() and path.exists()


@contextmanager
def serial_pair(
    directory: Path, *, timeout: float = 5.0, socat: str = "socat"
) -> Iterator[SerialPair]:
    """Start socat joining ``directory/a`` and ``directory/b``; skip the test if there is no socat.

    Yields once both links exist and socat has started its transfer loop (at most ``timeout``
    seconds, else RuntimeError with socat's log); terminates socat on exit whatever happened.
    """
    exe = shutil.which(socat)
    if exe is None:
        pytest.skip(f"{socat} is not installed: no pty pair for the serial-line tests")
    directory.mkdir(parents=True, exist_ok=True)
    a, b, log = directory / "a", directory / "b", directory / "socat.log"
    for stale in (a, b):
        stale.unlink(missing_ok=True)
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [exe, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        _wait_ready(proc, a, b, log, timeout)
        yield SerialPair(str(a), str(b), proc.pid, log)
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], a: Path, b: Path, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"socat exited with {proc.returncode}: {_tail(log)}")
        if _linked(a) and _linked(b) and READY_NOTICE in _tail(log):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"socat pty pair not ready within {timeout:g} s: {_tail(log)}")
        time.sleep(0.005)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace").strip()[-2000:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)


def alive(pid: int) -> bool:
    """Whether a process with this id still exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

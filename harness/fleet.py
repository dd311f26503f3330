"""Fleets in parallel: which scenario may run beside which, when pytest-xdist spreads a run.

Two rules keep workers from driving one endpoint at the same time:

* Every scenario about one home (parametrized by ``node``) is in that home's scope, so the
  scheduler (``harness run -n N``) sends all of a home's scenarios to one worker, in order.
  Homes run in parallel on different workers.
* A scenario about the whole site (islanding, trip settings: it drives every home at once) must
  not overlap any other. On a live site the workers share a lock file in the results folder: a
  home's scenario holds it shared, a site scenario exclusively, so a site scenario waits until
  no home scenario runs and holds the others back while it runs.

A virtual site needs no lock: every worker starts its own copy of the plant and its endpoints.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SITE_GROUP = "site"
LOCK_FILE = ".site.lock"
POLL_S = 0.05
LOCK_TIMEOUT_S = 8 * 3600.0
"""Longest a scenario waits for the site: a home's capacity cycle on real equipment takes hours."""


def group_of(item: pytest.Item) -> str:
    """``node:<home>`` for a scenario about one home, ``site`` for one about the whole site."""
    callspec = getattr(item, "callspec", None)
    node = callspec.params.get("node") if callspec is not None else None
    return f"node:{node}" if node is not None else SITE_GROUP


def scope_of(nodeid: str, homes: list[str]) -> str:
    """The scheduling scope of a test id: its home's group when a parameter names a home, else
    the test itself (site scenarios are spread freely; on a live site the lock orders them)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return nodeid
    params = nodeid.rsplit("[", 1)[1][:-1]
    for home in homes:
        if (
            params == home
            or params.startswith(f"{home}-")
            or params.endswith(f"-{home}")
            or f"-{home}-" in params
        ):
            return f"node:{home}"
    return nodeid


def make_scheduler(config: pytest.Config, log: Any, homes: list[str]) -> Any:
    """pytest-xdist's load-scope scheduling with a home as the scope.

    The xdist_group marks that ``--dist loadgroup`` reads are not honoured under pytest 9 (xdist
    3.8 writes the group into a node-id attribute pytest 9 no longer reads), so the harness
    supplies the grouping itself, from the test ids the scheduler sees.
    """
    from xdist.scheduler import LoadScopeScheduling

    class FleetScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid, homes)

    return FleetScheduling(config, log)


class SiteLockTimeout(Exception):
    """Another worker held the site for longer than the wait allowed."""


@contextmanager
def site_lock(folder: Path, exclusive: bool, timeout_s: float) -> Iterator[None]:
    """Hold the results folder's site lock, shared or exclusive, for the duration of a scenario.

    ``flock`` locks belong to the open file, so each scenario opens its own; the lock goes with
    the process if a worker dies. Polled, so a wait has a bound and says so when it runs out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    kind = "exclusively" if exclusive else "shared"
                    raise SiteLockTimeout(
                        f"waited {timeout_s:g} s to hold the site {kind}: another worker's "
                        f"scenario kept it ({folder / LOCK_FILE})"
                    ) from None
                time.sleep(POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock

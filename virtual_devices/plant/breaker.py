"""The PCC breaker between the grid source and the home bus.

Opening it with the homes' inverters energizing forms an unintentional island; the plant logs
``pcc_open`` / ``pcc_close`` at the instant of the operation, which is the island's time zero.
"""

from __future__ import annotations

from collections.abc import Callable


def _ignore(_event: str) -> None:
    """Default notification sink for a breaker used outside a plant."""


class Breaker:
    """An ideal two-state switch; operating it in the state it is in is not an event."""

    def __init__(self, closed: bool = True, notify: Callable[[str], None] = _ignore) -> None:
        self._closed = closed
        self._notify = notify

    @property
    def closed(self) -> bool:
        return self._closed

    def open(self) -> None:
        if self._closed:
            self._closed = False
            self._notify("pcc_open")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._notify("pcc_close")

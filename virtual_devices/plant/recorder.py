"""Recorder of the plant's channels, sampling at every plant step while a capture is open.

Nothing is stored unless a capture is open, and a capture's storage is handed over and dropped
when it stops, so memory stays bounded by what open captures need. Samples are right-continuous:
when an event changes the plant at the instant of the last sample, that sample is overwritten
with the post-event values, so a step change shows at its exact time and times rise strictly.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import numpy.typing as npt

Trace = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""(times in s on the site clock, values) of one channel."""


def unknown_channel(name: str, known: Iterable[str]) -> KeyError:
    """The error for a channel name nobody provides, listing the ones that exist."""
    return KeyError(f"unknown channel {name!r}; known channels: {', '.join(sorted(known))}")


class _Capture:
    """Growing columns (``array('d')``: compact, appendable, zero-copy into numpy)."""

    __slots__ = ("columns", "getters", "names", "times")

    def __init__(self, names: list[str], getters: list[Callable[[], float]]) -> None:
        self.names = names
        self.getters = getters
        self.times: array[float] = array("d")
        self.columns: list[array[float]] = [array("d") for _ in names]

    def sample(self, t: float) -> None:
        times = self.times
        if times and times[-1] == t:
            for column, getter in zip(self.columns, self.getters, strict=True):
                column[-1] = getter()
        else:
            times.append(t)
            for column, getter in zip(self.columns, self.getters, strict=True):
                column.append(getter())


class Recorder:
    """Captures of named channels; the plant calls :meth:`sample` after every step."""

    def __init__(
        self, sources: Mapping[str, Callable[[], float]], now: Callable[[], float]
    ) -> None:
        """``sources`` maps channel names to getters of their instantaneous value."""
        self._sources = sources
        self._now = now
        self._captures: dict[int, _Capture] = {}
        self._next_handle = 1

    @property
    def active(self) -> bool:
        """Whether any capture is open (the plant skips sampling otherwise)."""
        return bool(self._captures)

    def channels(self) -> list[str]:
        return list(self._sources)

    def start(self, channels: list[str]) -> int:
        """Open a capture of ``channels`` and take its first sample now; returns its handle."""
        if isinstance(channels, str):
            raise TypeError(f"channels must be a list of names, not the string {channels!r}")
        names = list(dict.fromkeys(channels))
        if not names:
            raise ValueError("a capture needs at least one channel")
        for name in names:
            if name not in self._sources:
                raise unknown_channel(name, self._sources)
        capture = _Capture(names, [self._sources[name] for name in names])
        capture.sample(self._now())
        handle = self._next_handle
        self._next_handle += 1
        self._captures[handle] = capture
        return handle

    def stop(self, handle: int) -> dict[str, Trace]:
        """Close a capture and hand over its samples, one (times, values) pair per channel."""
        try:
            capture = self._captures.pop(handle)
        except KeyError:
            raise KeyError(f"no open capture with handle {handle}") from None
        times = np.frombuffer(capture.times, dtype=np.float64)
        return {
            name: (times.copy(), np.frombuffer(column, dtype=np.float64).copy())
            for name, column in zip(capture.names, capture.columns, strict=True)
        }

    def sample(self, t: float) -> None:
        for capture in self._captures.values():
            capture.sample(t)

"""An instrument the site does not have.

A field node is commissioned with nothing but its own interfaces: no grid simulator, no power
analyzer. The bench still has a place for each role, so that a scenario which needs one fails
on its first use with a sentence naming the missing instrument and the site field that would
provide it, instead of the whole run refusing to start (the field campaign never touches them).
"""

from __future__ import annotations

from typing import Any

from harness.devices.roles import DeviceError


class MissingInstrument(DeviceError):
    """A scenario used an instrument the site file does not name."""


class _Absent:
    def __init__(self, what: str, field: str) -> None:
        self._what = what
        self._field = field

    def __getattr__(self, name: str) -> Any:
        raise MissingInstrument(
            f"this step needs a {self._what}, and the site names none "
            f"(add one under '{self._field}')"
        )

    def disconnect(self) -> None:
        """Nothing was opened."""

    def __repr__(self) -> str:
        return f"<no {self._what}>"


def absent(what: str, field: str) -> Any:
    """A stand-in for an instrument role that raises MissingInstrument on any use."""
    return _Absent(what, field)


def is_present(device: object) -> bool:
    return not isinstance(device, _Absent)

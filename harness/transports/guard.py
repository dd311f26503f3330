"""The one point every write passes before it reaches the wire.

Transports call :func:`permit` just before a write leaves the machine (a Modbus write, an SCPI
set command, a CAN frame) and :func:`refused` when they refuse one themselves (the write guard
of a register map). What happens then is decided above the transports, by the safety package:
an audit log of every write, ``--dry-run`` that lets nothing out, a supervisor that blocks writes
after a trip. With no hook installed, every write goes out (unit tests, tools).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WriteRequest:
    transport: str  # "modbus", "scpi" or "can"
    target: str  # host:port/unit, VISA resource, or CAN channel
    what: str  # e.g. "write_registers 40123 [1, 0]", "SOUR:VOLT 240", "INV_Heartbeat"


Hook = Callable[[WriteRequest], bool]
"""Returns False to keep the write off the wire (the transport then reports success quietly)."""

RefusalHook = Callable[[WriteRequest, str], None]

_lock = threading.Lock()
_hooks: list[Hook] = []
_refusal_hooks: list[RefusalHook] = []


def install(hook: Hook, on_refusal: RefusalHook | None = None) -> Callable[[], None]:
    """Add a hook; returns the function that removes it again."""
    with _lock:
        _hooks.append(hook)
        if on_refusal is not None:
            _refusal_hooks.append(on_refusal)

    def uninstall() -> None:
        with _lock:
            if hook in _hooks:
                _hooks.remove(hook)
            if on_refusal is not None and on_refusal in _refusal_hooks:
                _refusal_hooks.remove(on_refusal)

    return uninstall


def permit(request: WriteRequest) -> bool:
    """Whether ``request`` may go on the wire; every installed hook sees it."""
    with _lock:
        hooks = list(_hooks)
    allowed = True
    for hook in hooks:
        allowed = hook(request) and allowed
    return allowed


def refused(request: WriteRequest, reason: str) -> None:
    """A transport refused ``request`` itself (out of range, not writable): let the audit know."""
    with _lock:
        hooks = list(_refusal_hooks)
    for hook in hooks:
        hook(request, reason)

"""Virtual relay controllers of a relay-stepped RLC load bank, driving the plant's island load.

One SCPI server per branch (resistive, inductive, capacitive), each speaking the site's relay
controller dialect (e.g. ics-8064: ``ROUT:OPEN:ALL``, ``C (@1,3,7)``, ``Q?``). The relays switch
the steps of the site's step map (the same ``options.branches`` the driver reads); after every
switching the three branch sums are the island load: R's watts, and L's and C's vars expressed
as the quality factor (Q_L / P) and C's percent of the balanced value (Q_C / Q_L), which is how
:class:`virtual_devices.plant.load.IslandLoad` is sized. A relay number the controller does not
have is a data-out-of-range error, the relays unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from harness.transports.dialects import Dialect, load_dialect
from harness.transports.dialects.relay_bank import (
    Branch,
    RelayBankEndpoints,
    parse_branches,
    parse_relay_list,
    relay_list,
)
from virtual_devices.endpoints.instruments import DialectHandler, LoadPlant
from virtual_devices.endpoints.scpi_server import (
    DATA_OUT_OF_RANGE,
    DATA_TYPE_ERROR,
    Command,
    InstrumentIdentity,
    ScpiError,
    ScpiServer,
)


class RelayBankLoad:
    """The three branches' closed relays and the island load they make."""

    def __init__(self, plant: LoadPlant, branches: Mapping[str, Branch]) -> None:
        self.plant = plant
        self.branches = dict(branches)
        self.closed: dict[str, set[int]] = {name: set() for name in branches}

    def load(self, branch: str) -> float:
        return self.branches[branch].load(self.closed[branch])

    def apply(self) -> None:
        """Size the island load from the three branch sums (all open: no load)."""
        power = self.load("resistive")
        inductive, capacitive = self.load("inductive"), self.load("capacitive")
        load = self.plant.island_load
        if power == 0 or inductive == 0 or capacitive == 0:
            # Without R there is no island load to size; without L or C the plant's parallel
            # RLC has no resonance to model: both read as a purely resistive load.
            load.set_reactive(100.0, 100.0)
            load.set(power, 0.0)
            return
        load.set_reactive(100.0, capacitive / inductive * 100.0)
        load.set(power, inductive / power)


class RelayControllerHandler(DialectHandler):
    """One branch's relay controller."""

    role = "load_bank"

    def __init__(
        self,
        bank: RelayBankLoad,
        branch: str,
        lock: threading.RLock,
        identity: InstrumentIdentity,
        dialect: Dialect | str,
    ) -> None:
        super().__init__(identity, lock, dialect)
        self.bank = bank
        self.branch = branch
        self.relays = int(self.spec.setting("relays", 16))

    def _open_all(self, _args: str) -> None:
        self.bank.closed[self.branch].clear()
        self.bank.apply()

    def _close(self, args: str) -> None:
        try:
            relays = parse_relay_list(args)
        except ValueError as exc:
            raise ScpiError(DATA_TYPE_ERROR, str(exc)) from None
        bad = [r for r in relays if not 1 <= r <= self.relays]
        if bad:
            raise ScpiError(DATA_OUT_OF_RANGE, f"relay {bad[0]} (1..{self.relays})")
        self.bank.closed[self.branch].update(relays)
        self.bank.apply()

    def _state(self, _args: str) -> str:
        return relay_list(sorted(self.bank.closed[self.branch]))

    def bindings(self) -> Mapping[str, Command]:
        return {
            "open_all": self._open_all,
            "close": self._close,
            "state": self._state,
            "version": lambda _a: self.identity.firmware,
        }


def relay_bank_handlers(
    plant: Any,
    lock: threading.RLock,
    identity: InstrumentIdentity,
    driver: str,
    branches: Mapping[str, Branch],
) -> dict[str, RelayControllerHandler]:
    """A controller per branch, all driving the one island load; each with its own serial."""
    dialect = load_dialect(driver)
    bank = RelayBankLoad(plant, branches)
    bank.apply()
    return {
        name: RelayControllerHandler(
            bank,
            name,
            lock,
            InstrumentIdentity(
                identity.manufacturer,
                identity.model,
                f"{identity.serial}-{name[0].upper()}",
                identity.firmware,
            ),
            dialect,
        )
        for name in branches
    }


def serve_relay_bank(
    cfg: Any, plant: Any, lock: threading.RLock, loop: Any
) -> tuple[list[ScpiServer], RelayBankEndpoints]:
    """Start a controller server per branch of the site's load bank ``cfg``; the endpoints to
    hand the driver. Servers already started are stopped if a later one fails."""
    ident = cfg.identity
    identity = InstrumentIdentity(ident.manufacturer, ident.model, ident.serial, ident.firmware)
    branches = parse_branches(cfg.options, ("instruments", "load_bank", "options"))
    handlers = relay_bank_handlers(plant, lock, identity, cfg.driver, branches)
    servers: list[ScpiServer] = []
    try:
        for handler in handlers.values():
            server = ScpiServer(handler, loop=loop)
            server.start()
            servers.append(server)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    resources = {name: s.resource for name, s in zip(handlers, servers, strict=True)}
    return servers, RelayBankEndpoints(resources)

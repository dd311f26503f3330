"""Contracts and the profiles they extend: clauses that judge quantities against limits.

A clause names a quantity from the catalogue (quantities.yaml) and limits with units; limits are
converted to the quantity's unit once, here, so the verdict step compares plain numbers.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from harness.config.errors import ConfigErrors
from harness.config.quantities import catalogue
from harness.config.scorecard import Scorecard
from harness.config.settings import Settings
from harness.config.units import Celsius, Percent, Seconds, UnitError, Watts, to_unit
from harness.config.validation import validate
from harness.config.yamlsrc import load_yaml


class Clause(BaseModel):
    """One acceptance criterion as the contract numbers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    quantity: str
    min: float | None = None
    max: float | None = None
    marginal: float | None = None
    source: str | None = None
    applies: Literal["node", "site"] | None = None
    limit_text: str = ""

    @model_validator(mode="before")
    @classmethod
    def _convert_limits(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("id"), (int, float)):
            data["id"] = str(data["id"])
        quantity = data.get("quantity")
        qdef = catalogue().get(quantity) if isinstance(quantity, str) else None
        if qdef is None:
            return data  # the quantity validator reports it
        texts = []
        for key in ("min", "max", "marginal"):
            if data.get(key) is None:
                continue
            raw = data[key]
            try:
                data[key] = to_unit(raw, qdef.unit, require_unit=not qdef.is_count)
            except UnitError as exc:
                # Reported on the field by the validator below.
                data[key] = _BadLimit(f"{exc}; expected a {qdef.unit} value for {quantity}")
            if key != "marginal":
                texts.append(f"{'<=' if key == 'max' else '>='} {raw}")
        data["limit_text"] = " and ".join(texts)
        return data

    @field_validator("min", "max", "marginal", mode="before")
    @classmethod
    def _limit_ok(cls, value: Any) -> Any:
        if isinstance(value, _BadLimit):
            raise ValueError(value.message)
        return value

    @field_validator("quantity")
    @classmethod
    def _known_quantity(cls, value: str) -> str:
        if value not in catalogue():
            close = difflib.get_close_matches(value, list(catalogue()), n=1)
            if close:
                raise ValueError(f"unknown quantity {value!r}; did you mean {close[0]!r}?")
            known = ", ".join(sorted(catalogue()))
            raise ValueError(f"unknown quantity {value!r}; expected one of: {known}")
        return value

    @model_validator(mode="after")
    def _has_limit(self) -> Clause:
        if self.min is None and self.max is None:
            raise ValueError(
                f"clause {self.id} has no limit; expected 'min' and/or 'max' with a unit"
            )
        if self.marginal is not None and self.marginal < 0:
            raise ValueError("marginal band must not be negative")
        return self

    @property
    def unit(self) -> str:
        return catalogue()[self.quantity].unit

    @property
    def scope(self) -> Literal["node", "site"]:
        return self.applies or catalogue()[self.quantity].scope


class _BadLimit:
    def __init__(self, message: str) -> None:
        self.message = message


class ContractInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    buyer: str | None = None
    supplier: str | None = None
    revision: str | None = None


class ProfileInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    source: str | None = None


class SocBand(BaseModel):
    """The state-of-charge band the units must operate in, %."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: Percent
    max: Percent

    @model_validator(mode="after")
    def _ordered(self) -> SocBand:
        if not 0 <= self.min < self.max <= 100:
            raise ValueError(f"expected 0 % <= min < max <= 100 %, got {self.min} .. {self.max}")
        return self


class CriticalLoad(BaseModel):
    """Critical-load endurance as the contract defines it: carried from ``starting_soc`` (of
    the grid-forming units' batteries) for ``duration`` (the clause on
    island.critical_load_duration holds the limit; the scenario observes this long)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    starting_soc: Percent = Field(ge=0, le=100)
    duration: Seconds = Field(gt=0)


class BlackStart(BaseModel):
    """The buyer's codified black-start sequence: the steps, by name, in the order the EMS must
    complete them (its reported step log is compared with it). The loads it must bring back
    are the site's critical loads, the same circuit definitions.critical_load is about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequence: tuple[str, ...] = Field(min_length=1)

    @field_validator("sequence")
    @classmethod
    def _unique_steps(cls, steps: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({s for s in steps if steps.count(s) > 1})
        if repeated:
            raise ValueError(f"a step appears twice in the sequence: {', '.join(repeated)}")
        return steps


class RatedStorage(BaseModel):
    """Each storage unit's contracted rating: the power the performance tests charge and
    discharge at, and the energy that sets how long a full charge or discharge may take (the
    limits on what is measured stay in the clauses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    power: Watts = Field(gt=0)
    energy: float = Field(gt=0)
    """kWh."""

    @field_validator("energy", mode="before")
    @classmethod
    def _kwh(cls, value: Any) -> float:
        try:
            return to_unit(value, "kWh")
        except UnitError as exc:
            raise ValueError(f"{exc}; expected an energy such as 5 kWh") from None


class Definitions(BaseModel):
    """Terms the contract defines and scenarios measure against (limits stay in clauses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    soc_band: SocBand | None = None
    depth_of_discharge: Percent | None = Field(None, gt=0, le=100)
    """The depth of discharge usable energy and cycle life are stated at."""
    critical_load: CriticalLoad | None = None
    black_start: BlackStart | None = None
    rated_storage: RatedStorage | None = None
    worst_case_ambient: Celsius | None = None
    """The hottest ambient the units must work in (the thermal test's chamber set point)."""

    def merged(self, override: Definitions) -> Definitions:
        """``override``'s terms replace these, term by term."""
        given = {k: v for k, v in override if v is not None}
        return self.model_copy(update=given)


class ApprovedEquipment(BaseModel):
    """A unit the contract approves for the site. A field check compares what each unit says
    about itself (SunSpec model 1, the BMS's identity frames) with these entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["inverter", "bms"]
    manufacturer: str = Field(min_length=1)
    model: str | None = None
    min_firmware: str | None = None
    """The oldest firmware accepted, compared number by number: "1.4" accepts 1.4.2 and 1.10."""

    @field_validator("min_firmware", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError(f'got the number {value}; quote a version: "1.10" (1.10 is 1.1)')
        return str(value) if isinstance(value, int) else value

    def accepts_firmware(self, firmware: str) -> bool:
        """Whether ``firmware`` is at least ``min_firmware`` (numbers in order, text ignored)."""
        if self.min_firmware is None:
            return True
        return _version(firmware) >= _version(self.min_firmware)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


class ContractFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contract: ContractInfo | None = None
    profile: ProfileInfo | None = None
    extends: str | None = None
    settings: Settings | None = None
    definitions: Definitions | None = None
    scorecard: Scorecard | None = None
    approved_equipment: list[ApprovedEquipment] | None = None
    clauses: list[Clause] = Field(default_factory=list)

    @field_validator("clauses")
    @classmethod
    def _unique_ids(cls, clauses: list[Clause], info: ValidationInfo) -> list[Clause]:
        seen: set[str] = set()
        for clause in clauses:
            if clause.id in seen:
                raise ValueError(f"clause id {clause.id!r} appears twice; ids must be unique")
            seen.add(clause.id)
        return clauses


class Contract(BaseModel):
    """A contract with its profile chain resolved: clauses by id, settings merged."""

    model_config = ConfigDict(frozen=True)

    info: ContractInfo
    clauses: tuple[Clause, ...]
    settings: Settings | None
    scorecard: Scorecard | None = None
    definitions: Definitions | None = None
    approved_equipment: tuple[ApprovedEquipment, ...] = ()
    files: tuple[Path, ...]
    sha256: str

    def clauses_for(self, quantity: str) -> list[Clause]:
        return [c for c in self.clauses if c.quantity == quantity]


def _load_file(path: Path) -> ContractFile:
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigErrors.single(path, "expected a mapping with 'contract' and 'clauses'", 1)
    return validate(ContractFile, data, path, lines)


def load_contract(path: Path) -> Contract:
    """Load a contract (or a bare profile) and everything it extends."""
    chain: list[tuple[Path, ContractFile]] = []
    current: Path | None = path
    while current is not None:
        if any(current.resolve() == p.resolve() for p, _ in chain):
            raise ConfigErrors.single(current, "'extends' forms a cycle")
        loaded = _load_file(current)
        chain.append((current, loaded))
        current = (current.parent / loaded.extends) if loaded.extends else None
    top_path, top = chain[0]
    if top.contract is None and top.profile is None:
        raise ConfigErrors.single(
            top_path, "missing 'contract:' (id, title) section", 1, "contract"
        )
    info = top.contract or ContractInfo(id=top.profile.id, title=top.profile.title)  # type: ignore[union-attr]
    clauses: dict[str, Clause] = {}
    settings: Settings | None = None
    scorecard: Scorecard | None = None
    definitions: Definitions | None = None
    approved: tuple[ApprovedEquipment, ...] = ()
    for _, loaded in reversed(chain):  # profile first, contract overrides
        scorecard = loaded.scorecard or scorecard
        if loaded.approved_equipment is not None:  # the nearest file's list replaces the others
            approved = tuple(loaded.approved_equipment)
        if loaded.definitions is not None:
            own = loaded.definitions
            definitions = own if definitions is None else definitions.merged(own)
        for clause in loaded.clauses:
            clauses[clause.id] = clause
        if loaded.settings is not None:
            settings = loaded.settings if settings is None else settings.merged(loaded.settings)
    digest = hashlib.sha256()
    for p, _ in chain:
        digest.update(p.read_bytes())
    return Contract(
        info=info,
        clauses=tuple(clauses.values()),
        settings=settings,
        scorecard=scorecard,
        definitions=definitions,
        approved_equipment=approved,
        files=tuple(p for p, _ in chain),
        sha256=digest.hexdigest(),
    )

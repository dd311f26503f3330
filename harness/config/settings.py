"""Device settings a profile prescribes (IEEE 1547 trip and enter-service defaults).

These configure the virtual inverters and are what a field check compares a real unit's
settings against; the values live in fixtures/profiles/, never in code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from harness.config.units import Hertz, PerUnit, Seconds, to_unit

TripFunction = Literal["ov2", "ov1", "uv1", "uv2", "of2", "of1", "uf1", "uf2"]


class TripSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: str  # "1.20 pu" for voltage functions, "62.0 Hz" for frequency functions
    clearing_time: Seconds


class EnterService(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    voltage_low: PerUnit
    voltage_high: PerUnit
    frequency_low: Hertz
    frequency_high: Hertz
    delay: Seconds
    ramp: Seconds


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trips: dict[TripFunction, TripSetting] | None = None
    enter_service: EnterService | None = None

    @model_validator(mode="after")
    def _threshold_units(self) -> Settings:
        for function, setting in (self.trips or {}).items():
            try:
                to_unit(setting.threshold, threshold_unit(function))
            except ValueError as exc:
                raise ValueError(f"trips.{function}.threshold: {exc}") from None
        return self

    def trip_threshold(self, function: TripFunction) -> float:
        """Threshold of ``function`` in pu (voltage) or Hz (frequency)."""
        assert self.trips is not None
        return to_unit(self.trips[function].threshold, threshold_unit(function))

    def merged(self, override: Settings) -> Settings:
        trips = dict(self.trips or {})
        trips.update(override.trips or {})
        return Settings(
            trips=trips or None,
            enter_service=override.enter_service or self.enter_service,
        )


def threshold_unit(function: str) -> str:
    return "pu" if function.endswith(("v1", "v2")) else "Hz"

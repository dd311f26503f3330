"""The contract's procurement scorecard: weighted categories of clauses (the seed's framework).

A category either collects clauses by quantity patterns (technical fit, interoperability,
performance) or is ``external``: scored from evidence the harness does not measure (field record).
"""

from __future__ import annotations

from fnmatch import fnmatch

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    weight: float = Field(gt=0)
    quantities: list[str] = Field(default_factory=list)
    external: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> Category:
        if self.external == bool(self.quantities):
            raise ValueError("a category has either 'quantities' patterns or 'external: true'")
        return self

    def covers(self, quantity: str) -> bool:
        return any(fnmatch(quantity, pattern) for pattern in self.quantities)


class Scorecard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[str, Category]
    credit: dict[str, float] = Field(default_factory=lambda: {"pass": 1.0, "marginal": 0.5})

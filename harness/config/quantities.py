"""The catalogue of measurable quantities (quantities.yaml beside this file)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict


class QuantityDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    unit: str
    scope: Literal["node", "site"]
    measured_by: str
    how: str
    parameters: dict[str, Any] = {}

    @property
    def is_count(self) -> bool:
        return self.unit in ("1", "count")


@lru_cache(maxsize=1)
def catalogue() -> dict[str, QuantityDef]:
    text = resources.files("harness.config").joinpath("quantities.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)["quantities"]
    return {name: QuantityDef(name=name, **body) for name, body in raw.items()}

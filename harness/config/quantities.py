"""The catalogue of measurable quantities: every YAML file in quantities.d/ beside this file.

One file per family of scenarios, so each family documents its own quantities (name, unit, how
it is measured, which scenario measures it, the method's parameters) next to the others.
"""

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

    @property
    def scenarios(self) -> list[tuple[str, str]]:
        """(module, function) of each scenario in ``measured_by``: ``a.py::f, ::g`` names two
        functions of one module."""
        pairs, module = [], ""
        for part in self.measured_by.split(","):
            head, _, function = part.strip().partition("::")
            module = head or module
            pairs.append((module, function.split("[")[0]))
        return pairs


@lru_cache(maxsize=1)
def catalogue() -> dict[str, QuantityDef]:
    folder = resources.files("harness.config").joinpath("quantities.d")
    out: dict[str, QuantityDef] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        raw = yaml.safe_load(entry.read_text("utf-8"))["quantities"]
        for name, body in raw.items():
            if name in out:
                raise ValueError(f"quantity {name} is defined twice (again in {entry.name})")
            out[name] = QuantityDef(name=name, **body)
    return out
